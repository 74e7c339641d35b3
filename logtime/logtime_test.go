package logtime

import (
	"bytes"
	"context"
	"testing"
	"time"

	"github.com/rs/zerolog"
)

// TestHookMatchesZerolog: for instants within one second, across
// second boundaries, in several zones (and back to one seen before), the
// hook writes byte for byte the event zerolog's own timestamp writes, with
// milliseconds, whether it reads the time from its clock or from the
// event's context.
func TestHookMatchesZerolog(t *testing.T) {
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
	hook := &Hook{now: func() time.Time { return instants[i] }}
	var got, want bytes.Buffer
	hooked := zerolog.New(&got).Hook(hook).With().Str("vm", "x").Logger()
	plain := zerolog.New(&want).With().Str("vm", "x").Logger()
	for i = range instants {
		got.Reset()
		want.Reset()
		hooked.Info().Int("n", i).RawJSON("message", []byte(`"hello"`)).Send()
		// zerolog's timestamp hook runs in Send, after the event's fields.
		plain.Info().Int("n", i).RawJSON("message", []byte(`"hello"`)).Str(zerolog.TimestampFieldName, instants[i].Format(Layout)).Send()
		if got.String() != want.String() {
			t.Errorf("instant %v:\n got %s\nwant %s", instants[i], got.Bytes(), want.Bytes())
		}
		// The same instant from an event's context (WithTime's text).
		got.Reset()
		hooked.Info().Ctx(WithTime(context.Background(), instants[i])).Int("n", i).RawJSON("message", []byte(`"hello"`)).Send()
		if got.String() != want.String() {
			t.Errorf("instant %v from the context:\n got %s\nwant %s", instants[i], got.Bytes(), want.Bytes())
		}
	}
}

// BenchmarkHook: one event with zerolog's timestamp, with the hook reading
// the clock, and with the hook taking the time from the event's context
// (as for a plugin line; one context for all events, as for the lines of
// one pipe read).
func BenchmarkHook(b *testing.B) {
	ctx := WithTime(context.Background(), time.Now())
	for _, bc := range []struct {
		name string
		log  zerolog.Logger
		ctx  context.Context
	}{
		{"zerolog", zerolog.New(discardLevel{}).With().Timestamp().Logger(), nil},
		{"hook", zerolog.New(discardLevel{}).Hook(&Hook{}), nil},
		{"hook-context-time", zerolog.New(discardLevel{}).Hook(&Hook{}), ctx},
	} {
		b.Run(bc.name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				e := bc.log.Info()
				if bc.ctx != nil {
					e = e.Ctx(bc.ctx)
				}
				e.Str("stream", "stdout").Msg("hello")
			}
		})
	}
}

type discardLevel struct{}

func (discardLevel) Write(p []byte) (int, error) { return len(p), nil }

// TestHookUsesContextTime: an event whose context carries a time is
// stamped with it and the clock is not read; others read the clock.
func TestHookUsesContextTime(t *testing.T) {
	t.Parallel()
	at := time.Date(2026, 11, 22, 9, 30, 15, 123, time.UTC)
	clock := time.Date(2030, 1, 2, 3, 4, 5, 0, time.UTC)
	reads := 0
	hook := &Hook{now: func() time.Time { reads++; return clock }}
	var buf bytes.Buffer
	log := zerolog.New(&buf).Hook(hook)

	log.Info().Ctx(WithTime(context.Background(), at)).Msg("read earlier")
	if want := `{"level":"info","time":"2026-11-22T09:30:15.000Z","message":"read earlier"}` + "\n"; buf.String() != want || reads != 0 {
		t.Errorf("with a context time: got %s (clock read %d times), want %s", buf.Bytes(), reads, want)
	}
	buf.Reset()
	log.Info().Msg("now")
	if want := `{"level":"info","time":"2030-01-02T03:04:05.000Z","message":"now"}` + "\n"; buf.String() != want || reads != 1 {
		t.Errorf("without: got %s (clock read %d times), want %s", buf.Bytes(), reads, want)
	}
}

// TestWithTimeKeepsParentValues: the context WithTime returns still
// answers for its parent's values, and FromContext finds the time through
// contexts derived from it.
func TestWithTimeKeepsParentValues(t *testing.T) {
	t.Parallel()
	type key struct{}
	at := time.Unix(1_800_000_000, 42)
	ctx := WithTime(context.WithValue(context.Background(), key{}, "parent"), at)
	if v, _ := ctx.Value(key{}).(string); v != "parent" {
		t.Errorf("parent value = %q, want %q", v, "parent")
	}
	inner := context.WithValue(ctx, struct{ k int }{1}, 1)
	if got, ok := FromContext(inner); !ok || !got.Equal(at) {
		t.Errorf("FromContext = %v, %v; want %v, true", got, ok, at)
	}
	if _, ok := FromContext(context.Background()); ok {
		t.Error("FromContext(Background) found a time")
	}
}

// TestHookOtherFormats: with a TimeFieldFormat other than RFC 3339 the
// hook writes what zerolog writes for the same time, the context's
// included. Not parallel: it changes zerolog's global format.
func TestHookOtherFormats(t *testing.T) {
	defer func(f string) { zerolog.TimeFieldFormat = f }(zerolog.TimeFieldFormat)
	at := time.Date(2026, 11, 22, 9, 30, 15, 123456789, time.FixedZone("x", 3600))
	for _, format := range []string{time.RFC3339Nano, zerolog.TimeFormatUnixMs, zerolog.TimeFormatUnix, time.Kitchen} {
		zerolog.TimeFieldFormat = format
		var got, want bytes.Buffer
		hooked, plain := zerolog.New(&got).Hook(&Hook{}), zerolog.New(&want)
		hooked.Info().Ctx(WithTime(context.Background(), at)).Msg("m")
		plain.Info().Time(zerolog.TimestampFieldName, at).Msg("m")
		if got.String() != want.String() {
			t.Errorf("format %q: got %s, want %s", format, got.Bytes(), want.Bytes())
		}
	}
}
