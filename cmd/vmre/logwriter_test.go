package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/rs/zerolog"
)

// recorder is an io.Writer that keeps every Write call separately and
// signals each one.
type recorder struct {
	mu     sync.Mutex
	writes []string
	wrote  chan struct{} // one token per Write, never blocks
}

func newRecorder() *recorder { return &recorder{wrote: make(chan struct{}, 1<<16)} }

func (r *recorder) Write(p []byte) (int, error) {
	r.mu.Lock()
	r.writes = append(r.writes, string(p))
	r.mu.Unlock()
	select {
	case r.wrote <- struct{}{}:
	default:
	}
	return len(p), nil
}

func (r *recorder) calls() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]string(nil), r.writes...)
}

func (r *recorder) all() string { return strings.Join(r.calls(), "") }

// never is an interval no test waits for.
const never = time.Hour

func TestLogWriterBatchesInOrder(t *testing.T) {
	t.Parallel()
	rec := newRecorder()
	w := newLogWriter(rec, 1<<20, never)
	var want strings.Builder
	for i := range 100 {
		ev := fmt.Sprintf("event %d\n", i)
		want.WriteString(ev)
		if _, err := w.WriteLevel(zerolog.InfoLevel, []byte(ev)); err != nil {
			t.Fatal(err)
		}
	}
	if got := rec.calls(); len(got) != 0 {
		t.Fatalf("%d writes before any flush was due, want 0", len(got))
	}
	if err := w.Flush(); err != nil {
		t.Fatal(err)
	}
	if got := rec.calls(); len(got) != 1 || got[0] != want.String() {
		t.Fatalf("after Flush: %d writes, %q; want one write of the 100 events in order", len(got), rec.all())
	}
}

func TestLogWriterFlushesWhenFull(t *testing.T) {
	t.Parallel()
	rec := newRecorder()
	w := newLogWriter(rec, 100, never)
	ev := strings.Repeat("x", 29) + "\n" // 30 bytes
	for range 3 {
		_, _ = w.Write([]byte(ev))
	}
	if n := len(rec.calls()); n != 0 {
		t.Fatalf("90 of 100 bytes buffered: %d writes, want 0", n)
	}
	_, _ = w.Write([]byte(ev))
	if got := rec.calls(); len(got) != 1 || got[0] != strings.Repeat(ev, 4) {
		t.Fatalf("past the limit: writes %q, want the 4 events in one", got)
	}
	// An event larger than the limit goes out at once, after what was
	// buffered.
	_, _ = w.Write([]byte("small\n"))
	big := strings.Repeat("b", 300) + "\n"
	_, _ = w.Write([]byte(big))
	if got := rec.calls(); len(got) != 2 || got[1] != "small\n"+big {
		t.Fatalf("big event: writes %q", got)
	}
}

func TestLogWriterLevelFlush(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		level zerolog.Level
		now   bool
	}{
		{zerolog.TraceLevel, false},
		{zerolog.DebugLevel, false},
		{zerolog.InfoLevel, false},
		{zerolog.NoLevel, false},
		{zerolog.WarnLevel, true},
		{zerolog.ErrorLevel, true},
		{zerolog.FatalLevel, true},
		{zerolog.PanicLevel, true},
	} {
		t.Run(tc.level.String(), func(t *testing.T) {
			t.Parallel()
			rec := newRecorder()
			w := newLogWriter(rec, 1<<20, never)
			_, _ = w.WriteLevel(zerolog.InfoLevel, []byte("before\n"))
			_, _ = w.WriteLevel(tc.level, []byte("this\n"))
			got := rec.all()
			switch {
			case tc.now && got != "before\nthis\n":
				t.Errorf("written %q, want both events at once, in order", got)
			case !tc.now && got != "":
				t.Errorf("written %q, want nothing before the interval", got)
			}
		})
	}
}

func TestLogWriterIntervalFlush(t *testing.T) {
	t.Parallel()
	rec := newRecorder()
	w := newLogWriter(rec, 1<<20, time.Millisecond)
	defer w.Close()
	for round := range 3 {
		ev := fmt.Sprintf("round %d\n", round)
		start := time.Now()
		_, _ = w.Write([]byte(ev))
		select {
		case <-rec.wrote:
		case <-time.After(10 * time.Second):
			t.Fatalf("round %d: the event was never written", round)
		}
		if got := rec.calls(); got[len(got)-1] != ev {
			t.Fatalf("round %d: last write %q, want %q", round, got[len(got)-1], ev)
		}
		t.Logf("round %d: written after %v", round, time.Since(start))
	}
}

// TestLogWriterUrgentGap: an urgent event right after another waits for the
// end of the gap instead of costing a write of its own, and is then written
// without anyone calling Flush.
func TestLogWriterUrgentGap(t *testing.T) {
	t.Parallel()
	clock := time.Unix(1e9, 0)
	for _, tc := range []struct {
		name string
		gap  time.Duration
	}{
		{"held back", never},
		{"written at the gap's end", time.Millisecond},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			rec := newRecorder()
			w := newLogWriter(rec, 1<<20, never)
			defer w.Close()
			w.gap = tc.gap
			w.now = func() time.Time { return clock } // every event at one instant
			var want strings.Builder
			for i := range 1000 {
				ev := fmt.Sprintf("warning %d\n", i)
				want.WriteString(ev)
				_, _ = w.WriteLevel(zerolog.WarnLevel, []byte(ev))
			}
			if tc.gap == never {
				if got := rec.calls(); len(got) != 1 || got[0] != "warning 0\n" {
					t.Fatalf("writes %q, want only the first warning, at once", got)
				}
				return
			}
			for rec.all() != want.String() {
				select {
				case <-rec.wrote:
				case <-time.After(10 * time.Second):
					t.Fatalf("the warnings after the first were never written: %d writes", len(rec.calls()))
				}
			}
			// The timer may fire while the loop still runs (a loaded
			// machine), each time ending a batch; one write per warning
			// would mean no batching at all.
			if n := len(rec.calls()); n >= 1000 {
				t.Fatalf("%d writes for 1000 warnings at one instant, want them batched", n)
			}
		})
	}
}

// TestLogWriterFullWhileUrgentHeld: warnings held back for the end of an
// urgent gap still go out whenever the buffer reaches its limit, so that a
// plugin flooding warnings costs writes of the limit's size, not a buffer
// that grows until the gap ends.
func TestLogWriterFullWhileUrgentHeld(t *testing.T) {
	t.Parallel()
	rec := newRecorder()
	w := newLogWriter(rec, 100, never)
	defer w.Close()
	w.gap = never
	ev := strings.Repeat("w", 29) + "\n" // 30 bytes
	var want strings.Builder
	for range 10 {
		want.WriteString(ev)
		_, _ = w.WriteLevel(zerolog.WarnLevel, []byte(ev))
	}
	got := rec.calls()
	if len(got) != 3 {
		t.Fatalf("%d writes %q, want 3: the first warning at once, then one per 100 bytes", len(got), got)
	}
	for i, c := range got[1:] {
		if len(c) < 100 || len(c) > 130 {
			t.Errorf("write %d is %d bytes, want the limit reached by one event", i+1, len(c))
		}
	}
	_ = w.Flush()
	if rec.all() != want.String() {
		t.Errorf("written %q, want every warning once, in order", rec.all())
	}
}

func TestLogWriterClose(t *testing.T) {
	t.Parallel()
	rec := newRecorder()
	w := newLogWriter(rec, 1<<20, never)
	_, _ = w.Write([]byte("a\n"))
	_, _ = w.Write([]byte("b\n"))
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	if got := rec.calls(); len(got) != 1 || got[0] != "a\nb\n" {
		t.Fatalf("after Close: writes %q, want one of both events", got)
	}
	if err := w.Close(); err != nil {
		t.Fatalf("second Close: %v", err)
	}
	// After Close nothing is held back.
	_, _ = w.WriteLevel(zerolog.InfoLevel, []byte("late\n"))
	if got := rec.calls(); len(got) != 2 || got[1] != "late\n" {
		t.Fatalf("event after Close: writes %q, want it written at once", got)
	}
}

func TestLogWriterDirectKeepsOrder(t *testing.T) {
	t.Parallel()
	rec := newRecorder()
	w := newLogWriter(rec, 1<<20, never)
	_, _ = w.Write([]byte("event\n"))
	fmt.Fprintln(w.direct(), "vmre run: message")
	if got := rec.all(); got != "event\nvmre run: message\n" {
		t.Fatalf("written %q, want the buffered event before the message", got)
	}
}

// TestLogWriterConcurrent: many goroutines logging through zerolog at once
// (run with -race): every event arrives exactly once, whole, and each
// goroutine's events in its order.
func TestLogWriterConcurrent(t *testing.T) {
	t.Parallel()
	var out bytes.Buffer // written under the logWriter's lock only
	w := newLogWriter(&out, 1<<10, time.Millisecond)
	log := zerolog.New(w).With().Timestamp().Logger()
	const writers, events = 8, 2000
	var wg sync.WaitGroup
	for g := range writers {
		wg.Go(func() {
			for i := range events {
				ev := log.Info()
				if i%500 == 0 {
					ev = log.Warn()
				}
				ev.Int("g", g).Int("i", i).Str("pad", strings.Repeat("p", i%97)).Msg("line")
			}
		})
	}
	wg.Wait()
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	next := make([]int, writers)
	lines := strings.Split(strings.TrimSuffix(out.String(), "\n"), "\n")
	for _, line := range lines {
		var e struct{ G, I int }
		if err := json.Unmarshal([]byte(line), &e); err != nil {
			t.Fatalf("not one JSON event per line: %q: %v", line, err)
		}
		if e.I != next[e.G] {
			t.Fatalf("writer %d: event %d where %d was expected", e.G, e.I, next[e.G])
		}
		next[e.G]++
	}
	if len(lines) != writers*events {
		t.Fatalf("%d events written, want %d", len(lines), writers*events)
	}
}

// TestLoggerConsoleFlushesWarn: the console format keeps the urgency of
// warn and above.
func TestLoggerConsoleFlushesWarn(t *testing.T) {
	t.Parallel()
	rec := newRecorder()
	f := logFlags{logFormat: "console", logLevel: "debug"}
	log, sink, err := f.logger(rec)
	if err != nil {
		t.Fatal(err)
	}
	defer sink.Close()
	log.Info().Msg("routine")
	if got := rec.all(); got != "" {
		t.Fatalf("info written at once: %q", got)
	}
	log.Warn().Msg("look here")
	got := rec.all()
	if !strings.Contains(got, "routine") || !strings.Contains(got, "look here") || strings.Index(got, "routine") > strings.Index(got, "look here") {
		t.Fatalf("after a warning: %q, want both lines in order", got)
	}
}

// TestDoctorFlushesLogAtExit: the doctor's last event, logged just before
// it returns, is on stderr when it has returned.
func TestDoctorFlushesLogAtExit(t *testing.T) {
	t.Parallel()
	code, _, errOut := vmreCmd(t, "doctor", "--log-level", "debug", "--log-format", "json", "--", os.Args[0], exampleVMCommand)
	if code != exitOK {
		t.Fatalf("doctor exit code %d", code)
	}
	if last := lastLogMessage(errOut); last != "vm process stopped" {
		t.Errorf("last log message %q, want %q (log not flushed at exit?)", last, "vm process stopped")
	}
}

// BenchmarkLogWriter: one 230-byte event (a 128-byte plugin line as
// zerolog JSON) into the batching sink and into an unbuffered file, the
// per-line cost the output bridge pays in `vmre run`.
func BenchmarkLogWriter(b *testing.B) {
	ev := []byte(`{"level":"info","vm":"bench","pid":12345,"stream":"stdout","time":"2026-11-22T10:00:00Z","message":"` + strings.Repeat("x", 128) + `"}` + "\n")
	for _, bc := range []struct {
		name    string
		batched bool
	}{{"batched", true}, {"unbuffered", false}} {
		b.Run(bc.name, func(b *testing.B) {
			f, err := os.Create(b.TempDir() + "/log")
			if err != nil {
				b.Fatal(err)
			}
			defer f.Close()
			var w zerolog.LevelWriter = zerolog.LevelWriterAdapter{Writer: f}
			if bc.batched {
				lw := newLogWriter(f, logFlushBytes, logFlushInterval)
				defer lw.Close()
				w = lw
			}
			b.SetBytes(int64(len(ev)))
			for b.Loop() {
				if _, err := w.WriteLevel(zerolog.InfoLevel, ev); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
