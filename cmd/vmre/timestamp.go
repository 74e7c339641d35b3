package main

import (
	"sync/atomic"
	"time"

	"github.com/rs/zerolog"
)

// timestampHook adds the "time" field exactly as zerolog's
// Context.Timestamp does (zerolog.TimestampFunc's time, formatted with
// zerolog.TimeFieldFormat, under zerolog.TimestampFieldName, at the same
// place in the event), but formats it at most once per second: with the
// default RFC 3339 format the text only changes when the second does, and
// formatting it for every plugin output line cost about 35 ns of the
// bridge's 300-400 ns per line (see BENCHMARKS.md, finding 3). With any
// other TimeFieldFormat it formats every event, as zerolog does.
//
// It is safe for concurrent use: the formatted second is swapped in
// atomically.
type timestampHook struct {
	now  func() time.Time // nil: zerolog.TimestampFunc, as zerolog does
	last atomic.Pointer[formattedSecond]
}

// formattedSecond is the "time" value of every instant in one second of
// one location, quoted as zerolog writes it. Never modified once stored.
type formattedSecond struct {
	sec    int64
	loc    *time.Location
	quoted []byte
}

var _ zerolog.Hook = (*timestampHook)(nil)

// Run adds the field to e.
func (h *timestampHook) Run(e *zerolog.Event, _ zerolog.Level, _ string) {
	if zerolog.TimeFieldFormat != time.RFC3339 {
		e.Timestamp()
		return
	}
	now := h.now
	if now == nil {
		now = zerolog.TimestampFunc
	}
	t := now()
	sec, loc := t.Unix(), t.Location()
	f := h.last.Load()
	if f == nil || f.sec != sec || f.loc != loc {
		// A zone's offset only changes on a whole second, so one text
		// serves the whole second.
		q := append(t.AppendFormat([]byte{'"'}, time.RFC3339), '"')
		f = &formattedSecond{sec: sec, loc: loc, quoted: q}
		h.last.Store(f)
	}
	e.RawJSON(zerolog.TimestampFieldName, f.quoted)
}
