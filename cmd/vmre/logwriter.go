package main

import (
	"io"
	"sync"
	"time"

	"github.com/rs/zerolog"
)

// The engine's log sink batches events: every plugin output line becomes a
// log event, and writing each straight to stderr would cost one write(2)
// per line.
const (
	// logFlushBytes is how much the sink buffers before it writes.
	logFlushBytes = 64 << 10
	// logFlushInterval bounds how long an event waits in the buffer.
	logFlushInterval = 10 * time.Millisecond
	// logUrgentGap is the least time between two writes that warn-level
	// events cause: a plugin printing warnings as fast as it can would
	// otherwise cost one write(2) per line, a fifth of the throughput of
	// the same lines at info.
	logUrgentGap = time.Millisecond
)

// logWriter is the engine's batching log sink (a [zerolog.LevelWriter]).
// Events are appended to a buffer that is written to the underlying writer
// in one call:
//
//   - as soon as it holds logFlushBytes or more, whatever the levels of
//     its events;
//   - at the latest interval after the first event buffered since the last
//     write (one timer for the writer, armed by that event: no goroutine or
//     timer per event);
//   - at once for warn, error, fatal and panic events, with everything
//     buffered before them, unless such an event was already written less
//     than logUrgentGap ago: then at the end of that gap (so an isolated
//     warning is seen at once, and a plugin logging errors in a loop costs
//     at most one write per gap);
//   - on Flush and on Close.
//
// The trade-off: an engine that dies without running Close (SIGKILL, the OOM
// killer, a fatal runtime error) loses its info and debug lines of the last
// interval at most, and warn and above of the last gap at most. Close must run on
// every return path of a command that logs (run and doctor defer it); after
// it, events go straight to the underlying writer, so goroutines still
// logging lose nothing.
//
// Events are never split or interleaved, and they reach the underlying
// writer in the order their Write calls took the lock. A logWriter is safe
// for concurrent use; it holds its lock while writing, so the underlying
// writer need not be.
type logWriter struct {
	out      io.Writer
	limit    int
	interval time.Duration
	gap      time.Duration    // logUrgentGap outside tests
	now      func() time.Time // time.Now outside tests

	mu     sync.Mutex
	buf    []byte
	timer  *time.Timer // created on first use
	armed  bool        // a timer flush is pending
	soon   bool        // ... and it is due at the end of an urgent gap
	closed bool
	// lastUrgent is when an urgent event was last written out.
	lastUrgent time.Time
}

var _ zerolog.LevelWriter = (*logWriter)(nil)

// newLogWriter returns a logWriter that writes to out in batches of about
// limit bytes, at most interval after an event was buffered.
func newLogWriter(out io.Writer, limit int, interval time.Duration) *logWriter {
	return &logWriter{out: out, limit: limit, interval: interval, gap: logUrgentGap, now: time.Now}
}

// Write buffers one event. It returns an error only if a write it caused
// (the buffer passing its limit) failed.
func (l *logWriter) Write(p []byte) (int, error) {
	return l.write(p, false)
}

// WriteLevel buffers one event and, for warn and above, writes it out at
// once with everything before it. zerolog calls it for every event.
func (l *logWriter) WriteLevel(level zerolog.Level, p []byte) (int, error) {
	return l.write(p, urgent(level))
}

// urgent reports whether an event of this level must not wait.
func urgent(level zerolog.Level) bool {
	return level >= zerolog.WarnLevel && level <= zerolog.PanicLevel
}

func (l *logWriter) write(p []byte, urgent bool) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.closed {
		return l.out.Write(p)
	}
	l.buf = append(l.buf, p...)
	// A full buffer is written whatever the levels: events held back for
	// the end of an urgent gap must not grow it without bound.
	full := len(l.buf) >= l.limit
	if urgent && !full {
		if l.soon {
			// A write at the end of the current gap is already due:
			// this event goes with it (no need to read the clock).
			return len(p), nil
		}
		now := l.now()
		if wait := l.lastUrgent.Add(l.gap).Sub(now); wait > 0 {
			// Another urgent write was just made: this event goes out at
			// the end of the gap, with whatever follows it until then.
			l.soon = true
			l.arm(wait)
			return len(p), nil
		}
		l.lastUrgent = now
	}
	if urgent || full {
		if err := l.flushLocked(); err != nil {
			return 0, err
		}
		return len(p), nil
	}
	if !l.armed {
		// Nothing was pending: this event starts the interval. A timer
		// already armed fires sooner, so it covers this event too.
		l.arm(l.interval)
	}
	return len(p), nil
}

// arm makes the timer fire after d, replacing any earlier setting.
func (l *logWriter) arm(d time.Duration) {
	l.armed = true
	if l.timer == nil {
		l.timer = time.AfterFunc(d, l.timerFlush)
	} else {
		l.timer.Reset(d)
	}
}

// timerFlush runs on the timer's goroutine.
func (l *logWriter) timerFlush() {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.soon {
		// The urgent events held back are written now: the next one
		// waits a gap from here.
		l.lastUrgent = l.now()
	}
	l.armed, l.soon = false, false
	// The writer's errors have nowhere to go from here: stderr failing
	// is not something a log line could report.
	_ = l.flushLocked()
}

// flushLocked writes the buffer out and empties it, whether or not the
// write succeeds (a sink that fails must not make the engine grow).
func (l *logWriter) flushLocked() error {
	if len(l.buf) == 0 {
		return nil
	}
	_, err := l.out.Write(l.buf)
	if cap(l.buf) > 4*l.limit {
		l.buf = nil // one huge event must not pin its buffer forever
	} else {
		l.buf = l.buf[:0]
	}
	return err
}

// Flush writes out what is buffered. It blocks until the underlying write
// returns and returns its error.
func (l *logWriter) Flush() error {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.flushLocked()
}

// Close flushes and stops the timer; later events are written through
// unbuffered. It is idempotent and returns the flush's error.
func (l *logWriter) Close() error {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.closed {
		return nil
	}
	l.closed = true
	if l.timer != nil {
		l.timer.Stop()
		l.armed, l.soon = false, false
	}
	return l.flushLocked()
}

// direct returns a writer for text that shares the underlying writer with
// the log but is not an event (the commands' own messages on stderr): each
// Write first writes out the buffered events, so the two stay in order.
func (l *logWriter) direct() io.Writer { return directWriter{l} }

type directWriter struct{ l *logWriter }

func (d directWriter) Write(p []byte) (int, error) {
	d.l.mu.Lock()
	defer d.l.mu.Unlock()
	if err := d.l.flushLocked(); err != nil {
		return 0, err
	}
	return d.l.out.Write(p)
}

// levelFlusher gives the console format the same urgency: zerolog's
// ConsoleWriter is not a LevelWriter, so it writes every event through
// Write; this passes the event on and flushes the batch for warn and above,
// as [logWriter.WriteLevel] does.
type levelFlusher struct {
	io.Writer // the ConsoleWriter, writing into sink
	sink      *logWriter
}

var _ zerolog.LevelWriter = levelFlusher{}

func (f levelFlusher) WriteLevel(level zerolog.Level, p []byte) (int, error) {
	n, err := f.Write(p)
	if err == nil && urgent(level) {
		_, err = f.sink.write(nil, true)
	}
	return n, err
}
