package logsink

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"strings"
	"sync"
	"syscall"
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

func TestWriterBatchesInOrder(t *testing.T) {
	t.Parallel()
	rec := newRecorder()
	w := New(rec, 1<<20, never)
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

func TestWriterFlushesWhenFull(t *testing.T) {
	t.Parallel()
	rec := newRecorder()
	w := New(rec, 100, never)
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

func TestWriterLevelFlush(t *testing.T) {
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
			w := New(rec, 1<<20, never)
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

func TestWriterIntervalFlush(t *testing.T) {
	t.Parallel()
	rec := newRecorder()
	w := New(rec, 1<<20, time.Millisecond)
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

// TestWriterUrgentGap: an urgent event right after another waits for the
// end of the gap instead of costing a write of its own, and is then written
// without anyone calling Flush.
func TestWriterUrgentGap(t *testing.T) {
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
			w := New(rec, 1<<20, never)
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

// TestWriterFullWhileUrgentHeld: warnings held back for the end of an
// urgent gap still go out whenever the buffer reaches its limit, so that a
// plugin flooding warnings costs writes of the limit's size, not a buffer
// that grows until the gap ends.
func TestWriterFullWhileUrgentHeld(t *testing.T) {
	t.Parallel()
	rec := newRecorder()
	w := New(rec, 100, never)
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

func TestWriterClose(t *testing.T) {
	t.Parallel()
	rec := newRecorder()
	w := New(rec, 1<<20, never)
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

func TestWriterDirectKeepsOrder(t *testing.T) {
	t.Parallel()
	rec := newRecorder()
	w := New(rec, 1<<20, never)
	_, _ = w.Write([]byte("event\n"))
	fmt.Fprintln(w.Direct(), "vmre run: message")
	if got := rec.all(); got != "event\nvmre run: message\n" {
		t.Fatalf("written %q, want the buffered event before the message", got)
	}
}

// TestWriterConcurrent: many goroutines logging through zerolog at once
// (run with -race): every event arrives exactly once, whole, and each
// goroutine's events in its order.
func TestWriterConcurrent(t *testing.T) {
	t.Parallel()
	var out bytes.Buffer // written under the Writer's lock only
	w := New(&out, 1<<10, time.Millisecond)
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

// gate is an io.Writer whose writes block until the test lets them
// through, one token each, so a test can hold a write under way.
type gate struct {
	entered chan []byte   // each write's bytes, when it starts
	release chan struct{} // one token lets one write return
	err     error         // returned by every write
}

func newGate() *gate { return &gate{entered: make(chan []byte, 16), release: make(chan struct{}, 16)} }

func (g *gate) Write(p []byte) (int, error) {
	g.entered <- append([]byte(nil), p...)
	<-g.release
	if g.err != nil {
		return 0, g.err
	}
	return len(p), nil
}

// TestWriterTimerWriteOutsideLock: the interval's write is made without
// the lock held, so events are buffered while it runs, and the next write
// (here Flush's) waits for it, so the writes stay in order, one at a time.
func TestWriterTimerWriteOutsideLock(t *testing.T) {
	t.Parallel()
	g := newGate()
	w := New(g, 1<<20, time.Millisecond)
	if _, err := w.Write([]byte("a\n")); err != nil {
		t.Fatal(err)
	}
	if got := string(<-g.entered); got != "a\n" { // the timer's write, held
		t.Fatalf("first write %q", got)
	}
	wrote := make(chan error, 1)
	go func() {
		_, err := w.Write([]byte("b\n"))
		wrote <- err
	}()
	select {
	case err := <-wrote:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("a Write waited for the timer's write")
	}
	flushed := make(chan error, 1)
	go func() { flushed <- w.Flush() }()
	select {
	case got := <-g.entered:
		t.Fatalf("write %q started while the timer's was under way", got)
	case err := <-flushed:
		t.Fatalf("Flush returned (%v) before the timer's write ended", err)
	case <-time.After(50 * time.Millisecond):
	}
	g.release <- struct{}{}
	if got := string(<-g.entered); got != "b\n" {
		t.Fatalf("second write %q, want the event buffered meanwhile", got)
	}
	g.release <- struct{}{}
	if err := <-flushed; err != nil {
		t.Fatal(err)
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
}

// TestWriterTimerWriteError: the error of the timer's write is returned by
// the next call that writes.
func TestWriterTimerWriteError(t *testing.T) {
	t.Parallel()
	g := newGate()
	g.err = errors.New("disk full")
	w := New(g, 1<<20, time.Millisecond)
	if _, err := w.Write([]byte("x\n")); err != nil {
		t.Fatal(err)
	}
	<-g.entered
	g.release <- struct{}{}
	if err := w.Flush(); !errors.Is(err, g.err) {
		t.Fatalf("Flush after a failed timer write: %v, want %v", err, g.err)
	}
	if err := w.Flush(); err != nil {
		t.Fatalf("second Flush: %v, want nil (the error was returned once)", err)
	}
}

// TestWriterWaitMakesPendingWrite: a write whose goroutine has not begun
// when the next one is due is made by the goroutine waiting for it, once,
// and the late goroutine then writes nothing.
func TestWriterWaitMakesPendingWrite(t *testing.T) {
	t.Parallel()
	rec := newRecorder()
	w := New(rec, 10, never)
	w.mu.Lock()
	w.buf = append(w.buf, "pending\n"...)
	f, err := w.startLocked() // its goroutine is not started
	if err != nil || f == nil {
		t.Fatalf("startLocked: %v, %v", f, err)
	}
	if err := w.waitLocked(); err != nil {
		t.Fatal(err)
	}
	w.mu.Unlock()
	if got := rec.calls(); len(got) != 1 || got[0] != "pending\n" {
		t.Fatalf("after the wait: writes %q, want the pending buffer once", got)
	}
	f.run(w) // the goroutine, late
	if got := rec.calls(); len(got) != 1 {
		t.Fatalf("the late goroutine wrote again: %q", got)
	}
}

// TestWriterLostBytes: what the underlying writer does not take is
// counted, on every path a write takes: all of each write to a pipe whose
// reader is gone, and the rest of a write cut short (a disk filling up).
// The Writer goes on after each failure.
func TestWriterLostBytes(t *testing.T) {
	t.Parallel()
	r, pw, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	r.Close()
	defer pw.Close()
	w := New(pw, 1<<20, time.Millisecond)
	steps := []struct {
		name string
		lost int
		do   func() error
	}{
		{"the interval's write", len("info\n"), func() error {
			if _, err := w.Write([]byte("info\n")); err != nil {
				return err
			}
			return w.Flush() // waits for the timer's write, or makes it
		}},
		{"a warning's", len("warn\n"), func() error {
			_, err := w.WriteLevel(zerolog.WarnLevel, []byte("warn\n"))
			return err
		}},
		{"direct text", len("vmre run: message\n"), func() error {
			_, err := fmt.Fprint(w.Direct(), "vmre run: message\n")
			return err
		}},
		{"Close's", len("x\n"), func() error {
			_, _ = w.Write([]byte("x\n"))
			return w.Close()
		}},
		{"after Close", len("late\n"), func() error {
			_, err := w.Write([]byte("late\n"))
			return err
		}},
	}
	want := uint64(0)
	for _, s := range steps {
		if err := s.do(); err == nil {
			t.Errorf("%s: no error from a pipe without a reader", s.name)
		}
		want += uint64(s.lost)
		if got := w.LostBytes(); got != want {
			t.Errorf("after %s: LostBytes %d, want %d", s.name, got, want)
		}
	}

	short := New(shortWriter{took: 3}, 1<<20, never)
	if _, err := short.WriteLevel(zerolog.ErrorLevel, []byte("0123456789\n")); !errors.Is(err, syscall.ENOSPC) {
		t.Fatalf("short write: %v, want ENOSPC", err)
	}
	if got := short.LostBytes(); got != 8 {
		t.Errorf("a write that took 3 of 11 bytes: LostBytes %d, want 8", got)
	}
}

// shortWriter takes the first bytes of each write, then fails as a full
// disk does.
type shortWriter struct{ took int }

func (s shortWriter) Write(p []byte) (int, error) { return min(s.took, len(p)), syscall.ENOSPC }
