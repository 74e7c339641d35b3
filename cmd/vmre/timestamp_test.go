package main

import (
	"bytes"
	"encoding/json"
	"testing"
	"time"

	"github.com/rs/zerolog"
)

// TestTimestampHookMatchesZerolog: for instants within one second, across
// second boundaries, in several zones (and back to one seen before), the
// hook writes byte for byte the event zerolog's own timestamp writes.
func TestTimestampHookMatchesZerolog(t *testing.T) {
	t.Parallel()
	base := time.Date(2026, 11, 22, 10, 57, 45, 0, time.UTC)
	east := time.FixedZone("east", 5*3600+30*60)
	west := time.FixedZone("west", -8*3600)
	instants := []time.Time{
		base, base.Add(time.Nanosecond), base.Add(999_999_999), // one second
		base.Add(time.Second), base.Add(time.Second + 500*time.Millisecond), // the next
		base.Add(time.Second).In(east), base.Add(time.Second).In(west), // the same second elsewhere
		base.Add(time.Second),      // back to UTC
		base.Add(-time.Nanosecond), // backwards (a clock step)
		time.Date(1969, 12, 31, 23, 59, 59, 500_000_000, time.UTC), time.Date(1970, 1, 1, 0, 0, 0, 0, time.UTC),
		base.Add(time.Hour).Local(),
	}
	var i int
	hook := &timestampHook{now: func() time.Time { return instants[i] }}
	var got, want bytes.Buffer
	hooked := zerolog.New(&got).Hook(hook).With().Str("vm", "x").Logger()
	plain := zerolog.New(&want).With().Str("vm", "x").Logger()
	for i = range instants {
		got.Reset()
		want.Reset()
		hooked.Info().Int("n", i).RawJSON("message", []byte(`"hello"`)).Send()
		// zerolog's timestamp hook runs in Send, after the event's fields.
		plain.Info().Int("n", i).RawJSON("message", []byte(`"hello"`)).Time(zerolog.TimestampFieldName, instants[i]).Send()
		if got.String() != want.String() {
			t.Errorf("instant %v:\n got %s\nwant %s", instants[i], got.Bytes(), want.Bytes())
		}
	}
}

// TestLoggerTimestamp: the engine's logger stamps every event with the
// current time, in zerolog's field and format.
func TestLoggerTimestamp(t *testing.T) {
	t.Parallel()
	rec := newRecorder()
	f := logFlags{logFormat: "json", logLevel: "info"}
	log, sink, err := f.logger(rec)
	if err != nil {
		t.Fatal(err)
	}
	before := time.Now().Truncate(time.Second)
	log.Info().Msg("one")
	log.Info().Msg("two")
	if err := sink.Close(); err != nil {
		t.Fatal(err)
	}
	after := time.Now()
	lines := bytes.Split(bytes.TrimSpace([]byte(rec.all())), []byte("\n"))
	if len(lines) != 2 {
		t.Fatalf("got %d events: %q", len(lines), rec.all())
	}
	for _, line := range lines {
		var ev map[string]any
		if err := json.Unmarshal(line, &ev); err != nil {
			t.Fatal(err)
		}
		s, _ := ev[zerolog.TimestampFieldName].(string)
		ts, err := time.Parse(time.RFC3339, s)
		if err != nil || ts.Before(before) || ts.After(after) {
			t.Errorf("time %q (%v) not in [%v, %v]: %s", s, err, before, after, line)
		}
	}
}

// BenchmarkTimestamp: one event with zerolog's timestamp and with the hook.
func BenchmarkTimestamp(b *testing.B) {
	for _, bc := range []struct {
		name string
		log  zerolog.Logger
	}{
		{"zerolog", zerolog.New(discardLevel{}).With().Timestamp().Logger()},
		{"hook", zerolog.New(discardLevel{}).Hook(&timestampHook{})},
	} {
		b.Run(bc.name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				bc.log.Info().Str("stream", "stdout").Msg("hello")
			}
		})
	}
}

type discardLevel struct{}

func (discardLevel) Write(p []byte) (int, error) { return len(p), nil }
