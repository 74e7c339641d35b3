package logline

import (
	"encoding/binary"
	"time"
	"unsafe"

	"github.com/rs/zerolog"
	"github.com/vmre/vmre/logtime"
)

// Log fields the bridge adds to a line's event, beside zerolog's level,
// message and time (the time the line was read).
const (
	fieldStream      = "stream"
	fieldPluginTime  = "plugin_time"
	fieldPluginLevel = "plugin_level"
	fieldLogger      = "logger"
	fieldCaller      = "caller"
	fieldPartial     = "partial"
	fieldPanic       = "panic"
	fieldDump        = "dump"
	fieldDumpCut     = "dump_cut"
	// fieldPlugin holds the plugin's own structured fields, nested, so
	// that none can overwrite the engine's (vm, pid, stream, level, time).
	fieldPlugin = "fields"
)

// send logs l and hands it to the tail and OnLine.
func (r *Reader) send(l *Line, startsPanic bool) {
	if e := r.b.opts.Log.WithLevel(l.Level); e != nil {
		// The line's time is when it was read, for a logtime.Hook on
		// Log: one context per read, wrapping the logger's own.
		if r.ctx == nil {
			r.ctx = logtime.WithTime(e.GetCtx(), r.now)
		}
		e = e.Ctx(r.ctx)
		if !r.sendFast(e, l) {
			r.sendFields(e, l)
		}
		e.Send()
	}
	if r.b.opts.OnLine != nil {
		r.b.opts.OnLine(l)
	}
	if r.b.tail != nil {
		// A text the parser cleaned into its scratch buffer is handed
		// to the tail whole, and the buffer of the line it pushes out
		// becomes the scratch: no copy of the line. l.Text is not
		// read after this.
		p := r.lineState
		switch inClean := p != nil && len(l.Text) > 0 && unsafe.SliceData(l.Text) == unsafe.SliceData(p.parser.clean); {
		case inClean && cap(p.parser.clean) <= tailOwnCap:
			p.parser.clean = r.b.tail.addOwned(r.stream, l.Text, startsPanic)
		case inClean:
			// Grown past the tail's bound by replaced invalid UTF-8:
			// the next line gets a buffer of its size.
			r.b.tail.add(r.stream, l.Text, startsPanic)
			p.parser.clean = nil
		default:
			r.b.tail.add(r.stream, l.Text, startsPanic)
		}
	}
}

// sendFields adds the stream and l's fields to e, a call per field
// (zerolog's methods change e and return it). The stream is the event's
// first field, right after the logger's own (vm, pid): where a context
// field would be, without a logger, and its 500-byte context buffer, kept
// per stream for the process's whole life.
func (r *Reader) sendFields(e *zerolog.Event, l *Line) {
	e.Str(fieldStream, r.stream)
	if !l.PluginTime.IsZero() {
		r.quoted = r.timeText.appendMember(r.quoted[:0], l.PluginTime)
		e.RawJSON(fieldPluginTime, r.quoted[len(memberPluginTime):])
	}
	if l.LevelText != nil {
		e.Bytes(fieldPluginLevel, l.LevelText)
	}
	if l.Logger != nil {
		e.Bytes(fieldLogger, l.Logger)
	}
	if l.Caller != nil {
		e.Bytes(fieldCaller, l.Caller)
	}
	if l.Partial {
		e.Bool(fieldPartial, true)
	}
	if l.Panic {
		e.Bool(fieldPanic, true)
	}
	if l.Dump != nil {
		e.Bytes(fieldDump, l.Dump)
		if r.dump.cut {
			e.Bool(fieldDumpCut, true)
		}
	}
	if l.Fields != nil {
		e.RawJSON(fieldPlugin, l.Fields)
	}
	if msg := l.Message; msg != nil {
		if l.safe(msg) {
			// What Bytes would write, without zerolog's byte-by-byte
			// escape check.
			r.quoted = append(append(append(r.quoted[:0], '"'), msg...), '"')
			e.RawJSON(zerolog.MessageFieldName, r.quoted)
		} else {
			e.Bytes(zerolog.MessageFieldName, msg)
		}
	}
}

// sendFast adds the stream and l's fields to e as sendFields does, in one
// RawJSON call: the stream's value is followed by the other fields'
// members, which zerolog copies as they are, so the event's bytes are the
// same as with a call per field, without zerolog encoding each key and
// checking each string. It does so only when every string (the stream's
// too) needs no escaping and the line has no dump; otherwise it adds nothing and
// reports false.
func (r *Reader) sendFast(e *zerolog.Event, l *Line) bool {
	if l.Dump != nil || r.streamJSON == "" || !l.safe4(l.Message, l.LevelText, l.Logger, l.Caller) {
		return false
	}
	b := append(r.quoted[:0], r.streamJSON...)
	if !l.PluginTime.IsZero() {
		b = r.timeText.appendMember(b, l.PluginTime)
	}
	b = appendMember(b, memberPluginLevel, l.LevelText)
	b = appendMember(b, memberLogger, l.Logger)
	b = appendMember(b, memberCaller, l.Caller)
	if l.Partial {
		b = append(b, memberPartial...)
	}
	if l.Panic {
		b = append(b, memberPanic...)
	}
	if l.Fields != nil {
		b = append(b, memberPlugin...)
		b = append(b, l.Fields...)
	}
	if l.Message != nil {
		// zerolog's message key is a variable a program may change.
		if zerolog.MessageFieldName == defaultMessageKey {
			b = append(b, memberMessage...)
		} else {
			b = append(b, ',', '"')
			b = append(b, zerolog.MessageFieldName...)
			b = append(b, '"', ':', '"')
		}
		b = append(b, l.Message...)
		b = append(b, '"')
	}
	r.quoted = b
	e.RawJSON(fieldStream, b)
	return true
}

// The members sendFast writes after the stream, each up to its value
// (a string's opening quote included).
const (
	memberPluginTime  = `,"` + fieldPluginTime + `":`
	memberPluginLevel = `,"` + fieldPluginLevel + `":"`
	memberLogger      = `,"` + fieldLogger + `":"`
	memberCaller      = `,"` + fieldCaller + `":"`
	memberPartial     = `,"` + fieldPartial + `":true`
	memberPanic       = `,"` + fieldPanic + `":true`
	memberPlugin      = `,"` + fieldPlugin + `":`
	defaultMessageKey = "message"
	memberMessage     = `,"` + defaultMessageKey + `":"`
)

// appendMember appends a string member when v is not nil: prefix ends
// with the value's opening quote, and v needs no escaping.
func appendMember(b []byte, prefix string, v []byte) []byte {
	if v == nil {
		return b
	}
	b = append(b, prefix...)
	b = append(b, v...)
	return append(b, '"')
}

// timeCache formats a plugin time as RFC 3339 with milli-, micro- or
// nanoseconds (as many as it carries), formatting the part up to the second
// and the zone once per second, and the whole member (memberPluginTime
// and the quoted text) once per time: the lines of a burst often share
// their millisecond.
type timeCache struct {
	sec          int64
	loc          *time.Location
	prefix, zone []byte
	last         time.Time // the time text is of; zero: none
	text         []byte    // last's member
}

// appendMember appends memberPluginTime and t's quoted text.
func (c *timeCache) appendMember(dst []byte, t time.Time) []byte {
	// == compares the location too: the same instant in another zone
	// is written differently.
	if t == c.last && !t.IsZero() {
		return append(dst, c.text...)
	}
	start := len(dst)
	dst = c.format(append(dst, memberPluginTime...), t)
	c.last, c.text = t, append(c.text[:0], dst[start:]...)
	return dst
}

func (c *timeCache) format(dst []byte, t time.Time) []byte {
	if sec := t.Unix(); sec != c.sec || t.Location() != c.loc || c.prefix == nil {
		c.sec, c.loc = sec, t.Location()
		c.prefix = t.AppendFormat(c.prefix[:0], "2006-01-02T15:04:05")
		c.zone = t.AppendFormat(c.zone[:0], "Z07:00")
	}
	dst = append(dst, '"')
	dst = append(dst, c.prefix...)
	ns := t.Nanosecond()
	width := 9
	switch {
	case ns%1e6 == 0:
		ns, width = ns/1e6, 3
	case ns%1e3 == 0:
		ns, width = ns/1e3, 6
	}
	dst = append(dst, '.')
	var digits [9]byte
	for i := width - 1; i >= 0; i-- {
		digits[i] = byte('0' + ns%10)
		ns /= 10
	}
	dst = append(dst, digits[:width]...)
	dst = append(dst, c.zone...)
	return append(dst, '"')
}

// jsonSafe reports whether b can go between JSON quotes as it is: no byte
// zerolog's JSON encoder would escape or replace (below 0x20, '"', '\\',
// 0x7f and above). It checks eight bytes at a time, 32 per branch.
func jsonSafe(b []byte) bool {
	if len(b) < 8 {
		for _, c := range b {
			if c < 0x20 || c >= 0x7f || c == '"' || c == '\\' {
				return false
			}
		}
		return true
	}
	last := binary.LittleEndian.Uint64(b[len(b)-8:])
	var bad uint64
	for len(b) >= 32 {
		bad |= unsafeBytes(binary.LittleEndian.Uint64(b)) | unsafeBytes(binary.LittleEndian.Uint64(b[8:])) |
			unsafeBytes(binary.LittleEndian.Uint64(b[16:])) | unsafeBytes(binary.LittleEndian.Uint64(b[24:]))
		if bad != 0 {
			return false
		}
		b = b[32:]
	}
	for len(b) > 8 {
		bad |= unsafeBytes(binary.LittleEndian.Uint64(b))
		b = b[8:]
	}
	return bad|unsafeBytes(last) == 0
}

// unsafeBytes is unprintable, plus '"' and '\\'.
func unsafeBytes(x uint64) uint64 {
	q := x ^ ('"' * ones)
	bs := x ^ ('\\' * ones)
	return unprintable(x) | (((q-ones)&^q)|((bs-ones)&^bs))&highs
}
