// Package logtime adds zerolog's "time" field to events more cheaply than
// zerolog's own timestamp, and lets the code that builds an event say when
// the thing it logs happened.
//
// [Hook] writes what zerolog's Context.Timestamp writes (the same key and
// place in the event), with milliseconds ([Layout]) while
// zerolog.TimeFieldFormat is its default, and two differences that matter
// when a plugin writes millions of lines:
//
//   - The text up to the second changes only once a second, so the hook
//     formats it at most once per second.
//   - An event whose context carries a time (see [WithTime]) is stamped
//     with that time, and the hook does not read the clock. The output
//     bridge in package subprocess does this for every plugin line: the
//     line is stamped with the moment the engine read it from the pipe,
//     which all the lines of one read share, instead of a clock read per
//     line (about 50 ns on a virtual machine, a sixth of the bridge's work
//     per line).
package logtime

import (
	"context"
	"sync/atomic"
	"time"

	"github.com/rs/zerolog"
)

// Hook is a zerolog.Hook that adds the "time" field. The zero value is
// ready to use, and safe for concurrent use: use it in place of
// With().Timestamp(), not beside it.
//
//	log := zerolog.New(w).Hook(&logtime.Hook{})
type Hook struct {
	now  func() time.Time // nil: zerolog.TimestampFunc, as zerolog does
	last secondCache
}

// Layout is how [Hook] writes the time while zerolog.TimeFieldFormat is
// its default, time.RFC3339: RFC 3339 with milliseconds, so that the lines
// of one second can be ordered and matched with a plugin's own times.
const Layout = "2006-01-02T15:04:05.000Z07:00"

// formattedSecond is the text of one second of one location around the
// milliseconds: `"2006-01-02T15:04:05.` and `Z07:00"`. Never modified
// once stored.
type formattedSecond struct {
	sec          int64
	loc          *time.Location
	prefix, zone []byte
}

var _ zerolog.Hook = (*Hook)(nil)

// Run adds the field to e: the time e's context carries, or else
// zerolog.TimestampFunc's.
func (h *Hook) Run(e *zerolog.Event, _ zerolog.Level, _ string) {
	ctx := e.GetCtx()
	if c, ok := ctx.(*timeCtx); ok && zerolog.TimeFieldFormat == time.RFC3339 {
		// A context of WithTime carries its time's text: the events of
		// one context (a pipe read's lines) share it.
		e.RawJSON(zerolog.TimestampFieldName, c.text)
		return
	}
	t, ok := FromContext(ctx)
	if !ok {
		now := h.now
		if now == nil {
			now = zerolog.TimestampFunc
		}
		t = now()
	}
	if zerolog.TimeFieldFormat != time.RFC3339 {
		e.Time(zerolog.TimestampFieldName, t)
		return
	}
	var buf [48]byte
	e.RawJSON(zerolog.TimestampFieldName, h.last.appendQuoted(buf[:0], t))
}

// secondCache formats times as quoted Layout text, the part up to the
// second and the zone once per second. Safe for concurrent use.
type secondCache struct {
	atomic.Pointer[formattedSecond]
}

func (c *secondCache) appendQuoted(b []byte, t time.Time) []byte {
	sec, loc := t.Unix(), t.Location()
	f := c.Load()
	if f == nil || f.sec != sec || f.loc != loc {
		// A zone's offset only changes on a whole second, so one text
		// serves the whole second.
		f = &formattedSecond{
			sec: sec, loc: loc,
			prefix: t.AppendFormat([]byte{'"'}, "2006-01-02T15:04:05."),
			zone:   append(t.AppendFormat(nil, "Z07:00"), '"'),
		}
		c.Store(f)
	}
	b = append(b, f.prefix...)
	ms := t.Nanosecond() / 1e6
	b = append(b, byte('0'+ms/100), byte('0'+ms/10%10), byte('0'+ms%10))
	return append(b, f.zone...)
}

// contextSecond formats the times of WithTime's contexts.
var contextSecond secondCache

// eventTime is the context key under which a timeCtx finds itself.
type eventTime struct{}

// timeCtx is a context carrying an event's time: one allocation, where
// context.WithValue would need a second for the time.Time.
type timeCtx struct {
	context.Context
	t    time.Time
	text []byte // t as Hook writes it with zerolog's default format, quoted
	buf  [40]byte
}

func (c *timeCtx) Value(key any) any {
	if key == (eventTime{}) {
		return c
	}
	return c.Context.Value(key)
}

// WithTime returns a context that tells [Hook] to stamp events with t:
// pass it to zerolog.Event.Ctx. Its other values are parent's. The time's
// text is formatted here, once for all the events given the context.
func WithTime(parent context.Context, t time.Time) context.Context {
	c := &timeCtx{Context: parent, t: t}
	c.text = contextSecond.appendQuoted(c.buf[:0], t)
	return c
}

// FromContext returns the time WithTime put in ctx, if any.
func FromContext(ctx context.Context) (time.Time, bool) {
	if c, ok := ctx.Value(eventTime{}).(*timeCtx); ok {
		return c.t, true
	}
	return time.Time{}, false
}
