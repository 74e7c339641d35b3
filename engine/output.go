package engine

import (
	"context"
	"fmt"
	"slices"
	"sync"
)

// outputRing keeps a runtime's recent output lines, bounded by count and by
// bytes, and fans new lines out to followers. add never blocks.
type outputRing struct {
	maxLines, maxBytes, followerBuffer int

	mu sync.Mutex
	// lines is a circular buffer: count lines starting at head, wrapping.
	// It grows up to maxLines and is then reused, so a flooding plugin
	// costs no allocation here beyond its lines' text.
	lines     []Line
	head      int
	count     int
	bytes     int
	seq       uint64
	pid       int
	closed    bool
	followers map[*Follower]struct{}
}

func newOutputRing(maxLines, maxBytes, followerBuffer int) *outputRing {
	return &outputRing{maxLines: maxLines, maxBytes: maxBytes, followerBuffer: followerBuffer, followers: make(map[*Follower]struct{})}
}

func lineBytes(l *Line) int { return len(l.Text) + 64 }

func (o *outputRing) setPid(pid int) {
	o.mu.Lock()
	o.pid = pid
	o.mu.Unlock()
}

func (o *outputRing) add(in OutputLine) {
	o.mu.Lock()
	defer o.mu.Unlock()
	o.seq++
	l := Line{Seq: o.seq, Time: in.Time, Stream: in.Stream, Level: in.Level, Text: in.Text, Partial: in.Partial, Panic: in.Panic, Pid: o.pid}
	// Make room: at most maxLines lines, and at most maxBytes bytes unless
	// the new line alone is larger.
	for o.count > 0 && (o.count >= o.maxLines || o.bytes+lineBytes(&l) > o.maxBytes) {
		o.dropOldestLocked()
	}
	if o.count < len(o.lines) {
		o.lines[(o.head+o.count)%len(o.lines)] = l
	} else {
		// Full but below maxLines: grow. Unwrap first if byte-bound drops
		// moved head, so that appending keeps the lines in order.
		if o.head != 0 {
			o.lines = slices.Concat(o.lines[o.head:], o.lines[:o.head])
			o.head = 0
		}
		o.lines = append(o.lines, l)
	}
	o.count++
	o.bytes += lineBytes(&l)
	for f := range o.followers {
		f.pushLocked(l)
	}
}

func (o *outputRing) dropOldestLocked() {
	oldest := &o.lines[o.head]
	o.bytes -= lineBytes(oldest)
	*oldest = Line{} // release its text
	o.head = (o.head + 1) % len(o.lines)
	o.count--
}

// tail returns the last n lines (all of them if n <= 0), oldest first.
func (o *outputRing) tail(n int) []Line {
	if n <= 0 || n > o.count {
		n = o.count
	}
	out := make([]Line, n)
	for i := range n {
		out[i] = o.lines[(o.head+o.count-n+i)%len(o.lines)]
	}
	return out
}

// close ends every follower; the ring keeps its lines.
func (o *outputRing) close() {
	o.mu.Lock()
	defer o.mu.Unlock()
	o.closed = true
	for f := range o.followers {
		f.closed = true
		f.wakeLocked()
		delete(o.followers, f)
	}
}

// Follower receives a runtime's new output lines. Obtain one from
// [Engine.TailOutput]; call Close when done.
type Follower struct {
	ring    *outputRing
	wake    chan struct{}
	pending []Line // guarded by ring.mu
	dropped uint64 // guarded by ring.mu
	closed  bool   // guarded by ring.mu
}

func (f *Follower) pushLocked(l Line) {
	if len(f.pending) >= f.ring.followerBuffer {
		f.dropped++
	} else {
		f.pending = append(f.pending, l)
	}
	f.wakeLocked()
}

func (f *Follower) wakeLocked() {
	select {
	case f.wake <- struct{}{}:
	default:
	}
}

// Next blocks until there are new lines and returns all of them, with the
// number of lines dropped since the last call because this follower fell
// more than its buffer behind. It returns [ErrClosed] once the runtime has
// left the engine (or the engine closed), and ctx's error when ctx ends.
func (f *Follower) Next(ctx context.Context) ([]Line, uint64, error) {
	for {
		f.ring.mu.Lock()
		if len(f.pending) > 0 || f.dropped > 0 {
			lines, dropped := f.pending, f.dropped
			f.pending, f.dropped = nil, 0
			f.ring.mu.Unlock()
			return lines, dropped, nil
		}
		if f.closed {
			f.ring.mu.Unlock()
			return nil, 0, ErrClosed
		}
		f.ring.mu.Unlock()
		select {
		case <-f.wake:
		case <-ctx.Done():
			return nil, 0, ctx.Err()
		}
	}
}

// Close stops the follower. Idempotent.
func (f *Follower) Close() {
	f.ring.mu.Lock()
	defer f.ring.mu.Unlock()
	f.closed = true
	delete(f.ring.followers, f)
}

// TailOutput returns up to n of the runtime's most recent output lines
// (all it keeps if n <= 0), oldest first. With follow set it also returns a
// [Follower] that receives every later line: nothing is lost or repeated
// between the tail and the follower. The follower ends when the runtime
// leaves the history or the engine closes.
func (e *Engine) TailOutput(id string, n int, follow bool) ([]Line, *Follower, error) {
	e.mu.Lock()
	r, ok := e.runtimes[id]
	e.mu.Unlock()
	if !ok {
		return nil, nil, fmt.Errorf("tail output of %q: %w", id, ErrUnknownRuntime)
	}
	o := r.out
	o.mu.Lock()
	defer o.mu.Unlock()
	lines := o.tail(n)
	if !follow {
		return lines, nil, nil
	}
	f := &Follower{ring: o, wake: make(chan struct{}, 1), closed: o.closed}
	if !o.closed {
		o.followers[f] = struct{}{}
	}
	return lines, f, nil
}
