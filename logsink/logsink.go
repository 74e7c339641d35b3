// Package logsink is a batching sink for a zerolog logger that writes to a
// file or stderr: the sink `vmre run` and `vmre doctor` log through, and
// the one to put under the logger given to [github.com/vmre/vmre/subprocess]
// when plugins may write many lines.
//
// Every plugin output line becomes one log event; writing each straight to
// its file costs one write(2) per line. A [Writer] gathers events into a
// buffer and writes it out in one call.
package logsink

import (
	"io"
	"sync"
	"sync/atomic"
	"time"

	"github.com/rs/zerolog"
)

// Defaults of [New].
const (
	// DefaultLimit is how much a Writer buffers before it writes.
	DefaultLimit = 64 << 10
	// DefaultInterval bounds how long an event waits in the buffer.
	DefaultInterval = 10 * time.Millisecond
	// keepMax is how many times its limit a buffer's capacity may be for
	// it to be reused: one huge event must not pin its buffer forever.
	keepMax = 4
	// urgentGap is the least time between two writes that warn-level
	// events cause: a plugin printing warnings as fast as it can would
	// otherwise cost one write(2) per line, a fifth of the throughput of
	// the same lines at info.
	urgentGap = time.Millisecond
)

// Writer is a batching log sink (a [zerolog.LevelWriter]). Events are
// appended to a buffer that is written to the underlying writer in one
// call:
//
//   - as soon as it holds the limit or more, whatever the levels of its
//     events, by the Write that filled it;
//   - at the latest interval after the first event buffered since the last
//     write (one timer for the writer, armed by that event: no goroutine or
//     timer per event), from the timer's goroutine, which hands the
//     buffer over and writes it without holding the lock, so events go on
//     filling a second buffer meanwhile;
//   - at once, before WriteLevel returns, for warn, error, fatal and panic
//     events, with everything buffered before them, unless such an event
//     was already written less than a millisecond ago: then at the end of
//     that gap (so an isolated warning is seen at once, and a plugin
//     logging errors in a loop costs at most one write per gap);
//   - on Flush and on Close.
//
// The trade-off: a process that dies without running Close (SIGKILL, the
// OOM killer, a fatal runtime error) loses its info and debug lines of the
// last interval at most, and warn and above of the last gap at most. Close
// must run on every return path of a program that logs; after it, events
// go straight to the underlying writer, so goroutines still logging lose
// nothing.
//
// Events are never split or interleaved, and they reach the underlying
// writer in the order their Write calls took the Writer's lock; the
// underlying writer is called by one goroutine at a time, so it need not
// be safe for concurrent use. A Writer is safe for concurrent use.
//
// The error of a write made from the timer's goroutine is returned by the
// next call that writes (a full buffer's, a warning's, Flush or Close).
type Writer struct {
	out      io.Writer
	limit    int
	interval time.Duration
	gap      time.Duration    // urgentGap outside tests
	now      func() time.Time // time.Now outside tests

	mu     sync.Mutex
	buf    []byte
	spare  []byte      // the buffer of the last write that ended, for reuse
	flight *flight     // the write under way outside the lock, or nil
	timer  *time.Timer // created on first use
	armed  bool        // a timer flush is pending
	soon   bool        // ... and it is due at the end of an urgent gap
	closed bool
	// lastUrgent is when an urgent event was last written out.
	lastUrgent time.Time

	lost atomic.Uint64 // bytes out did not take; see LostBytes
}

var _ zerolog.LevelWriter = (*Writer)(nil)

// flight is one write of a buffer made without the Writer's lock held, by
// the timer's goroutine or, if that one has not begun it when the next
// write is due, by the goroutine that needs it done.
type flight struct {
	buf   []byte
	taken atomic.Bool   // a goroutine has begun the write
	err   error         // set before done is closed
	done  chan struct{} // closed when the write has returned
}

// run makes the write unless another goroutine has taken it.
func (f *flight) run(w *Writer) {
	if !f.taken.CompareAndSwap(false, true) {
		return
	}
	_, f.err = w.put(f.buf)
	close(f.done)
}

// New returns a Writer that writes to out in batches of about limit bytes
// (DefaultLimit if limit <= 0), at most interval (DefaultInterval if
// interval <= 0) after an event was buffered. It starts no goroutine until
// an event is buffered.
func New(out io.Writer, limit int, interval time.Duration) *Writer {
	if limit <= 0 {
		limit = DefaultLimit
	}
	if interval <= 0 {
		interval = DefaultInterval
	}
	return &Writer{out: out, limit: limit, interval: interval, gap: urgentGap, now: time.Now}
}

// Write buffers one event. It returns an error only if a write it waited
// for failed (see [Writer]).
func (w *Writer) Write(p []byte) (int, error) {
	return w.write(p, false)
}

// WriteLevel buffers one event and, for warn and above, writes it out at
// once with everything before it, as described at [Writer]. zerolog calls
// it for every event. An empty p with an urgent level writes out what is
// buffered, as such an event would: a writer stacked on this one (a
// console formatter) passes a level on that way.
func (w *Writer) WriteLevel(level zerolog.Level, p []byte) (int, error) {
	return w.write(p, urgent(level))
}

// urgent reports whether an event of this level must not wait.
func urgent(level zerolog.Level) bool {
	return level >= zerolog.WarnLevel && level <= zerolog.PanicLevel
}

func (w *Writer) write(p []byte, urgent bool) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.closed {
		if err := w.waitLocked(); err != nil {
			return 0, err
		}
		return w.put(p)
	}
	w.buf = append(w.buf, p...)
	// A full buffer is written whatever the levels: events held back for
	// the end of an urgent gap must not grow it without bound.
	full := len(w.buf) >= w.limit
	if urgent && !full {
		if w.soon {
			// A write at the end of the current gap is already due:
			// this event goes with it (no need to read the clock).
			return len(p), nil
		}
		now := w.now()
		if wait := w.lastUrgent.Add(w.gap).Sub(now); wait > 0 {
			// Another urgent write was just made: this event goes out at
			// the end of the gap, with whatever follows it until then.
			w.soon = true
			w.arm(wait)
			return len(p), nil
		}
		w.lastUrgent = now
	}
	switch {
	case urgent, full:
		if err := w.flushLocked(); err != nil {
			return 0, err
		}
	case !w.armed:
		// Nothing was pending: this event starts the interval. A timer
		// already armed fires sooner, so it covers this event too.
		w.arm(w.interval)
	}
	return len(p), nil
}

// arm makes the timer fire after d, replacing any earlier setting.
func (w *Writer) arm(d time.Duration) {
	w.armed = true
	if w.timer == nil {
		w.timer = time.AfterFunc(d, w.timerFlush)
	} else {
		w.timer.Reset(d)
	}
}

// timerFlush runs on the timer's goroutine, and writes there, without the
// lock: events go on being buffered meanwhile.
func (w *Writer) timerFlush() {
	w.mu.Lock()
	if w.soon {
		// The urgent events held back are written now: the next one
		// waits a gap from here.
		w.lastUrgent = w.now()
	}
	w.armed, w.soon = false, false
	// The writer's errors have nowhere to go from here: they are
	// returned by the next call that waits for this write.
	f, _ := w.startLocked()
	w.mu.Unlock()
	if f != nil {
		f.run(w)
	}
}

// waitLocked waits for the write under way, if any, and takes its buffer
// back for reuse; it returns that write's error. The lock stays held
// while it waits: the next write must not start before this one ends. A
// write whose goroutine has not begun yet (on a loaded machine it may wait
// long for a thread) is made here instead, so that the caller waits for
// a write, not for the scheduler.
func (w *Writer) waitLocked() error {
	f := w.flight
	if f == nil {
		return nil
	}
	f.run(w)
	<-f.done
	w.flight = nil
	if cap(f.buf) <= keepMax*w.limit {
		w.spare = f.buf[:0]
	}
	return f.err
}

// startLocked hands the buffer to a new flight, which the caller must run
// once it has released the lock, and gives the Writer the spare buffer to
// fill. It returns no flight when nothing is buffered, and the error of
// the write it waited for.
func (w *Writer) startLocked() (*flight, error) {
	err := w.waitLocked()
	if len(w.buf) == 0 {
		return nil, err
	}
	f := &flight{buf: w.buf, done: make(chan struct{})}
	w.flight = f
	w.buf, w.spare = w.spare, nil
	return f, err
}

// flushLocked writes the buffer out with the lock held and empties it,
// whether or not the write succeeds (a sink that fails must not make the
// process grow).
func (w *Writer) flushLocked() error {
	err := w.waitLocked()
	if len(w.buf) == 0 {
		return err
	}
	if _, werr := w.put(w.buf); err == nil {
		err = werr
	}
	if cap(w.buf) > keepMax*w.limit {
		w.buf = nil
	} else {
		w.buf = w.buf[:0]
	}
	return err
}

// Flush writes out what is buffered. It blocks until the underlying writes
// (the one under way, if any, and its own) return, and returns their
// first error.
func (w *Writer) Flush() error {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.flushLocked()
}

// Close flushes and stops the timer; later events are written through
// unbuffered. It is idempotent and returns the flush's error.
func (w *Writer) Close() error {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.closed {
		return nil
	}
	w.closed = true
	if w.timer != nil {
		w.timer.Stop()
		w.armed, w.soon = false, false
	}
	return w.flushLocked()
}

// Direct returns a writer for text that shares the underlying writer with
// the log but is not an event (a command's own messages on stderr): each
// Write first writes out the buffered events, so the two stay in order.
func (w *Writer) Direct() io.Writer { return direct{w} }

type direct struct{ w *Writer }

func (d direct) Write(p []byte) (int, error) {
	d.w.mu.Lock()
	defer d.w.mu.Unlock()
	if err := d.w.flushLocked(); err != nil {
		return 0, err
	}
	return d.w.put(p)
}

// put writes p to the underlying writer, counting what it did not take.
func (w *Writer) put(p []byte) (int, error) {
	n, err := w.out.Write(p)
	if n < len(p) {
		w.lost.Add(uint64(len(p) - max(n, 0)))
	}
	return n, err
}

// LostBytes is how many bytes of events and direct text the underlying
// writer did not take: those of each write that failed (a closed stderr,
// a full disk) from where it stopped. Those events are lost; the Writer
// goes on with the next ones. It is safe to call at any time.
func (w *Writer) LostBytes() uint64 { return w.lost.Load() }
