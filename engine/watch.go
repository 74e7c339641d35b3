package engine

import (
	"context"
	"time"
)

// Watcher receives a snapshot of every runtime, then each change, in the
// order the engine made them. Obtain one from [Engine.Watch]; call Close
// when done.
//
// The engine never waits for a watcher. Each has a buffer of
// [Config.WatchBuffer] changes; a watcher that falls further behind loses
// its pending changes and gets a fresh snapshot as its next message (a
// resync), which is always a correct picture of the engine at that moment.
type Watcher struct {
	e       *Engine
	wake    chan struct{}
	pending []Change // guarded by e.mu
	resync  bool     // guarded by e.mu
	closed  bool     // guarded by e.mu
	resyncs int      // guarded by e.mu
}

// Watch returns a new watcher whose first message is a snapshot.
func (e *Engine) Watch() *Watcher {
	w := &Watcher{e: e, wake: make(chan struct{}, 1), resync: true}
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.closed {
		w.closed, w.resync = true, false // nothing to deliver: ErrClosed at once
		return w
	}
	e.watchers[w] = struct{}{}
	return w
}

func (e *Engine) publishLocked(c Change) {
	e.changeSeq++
	c.Seq = e.changeSeq
	for w := range e.watchers {
		w.pushLocked(c)
	}
}

func (w *Watcher) pushLocked(c Change) {
	if w.resync {
		return // the coming snapshot includes this change
	}
	if len(w.pending) >= w.e.cfg.WatchBuffer {
		w.pending = nil
		w.resync = true
		w.resyncs++
	} else {
		w.pending = append(w.pending, c)
	}
	w.wakeLocked()
}

func (w *Watcher) wakeLocked() {
	select {
	case w.wake <- struct{}{}:
	default:
	}
}

// closeLocked ends the watch. What is pending is still delivered: when the
// engine closes, the last changes (runtimes reaching stopping and exited)
// are what a watcher most needs to see.
func (w *Watcher) closeLocked() {
	w.closed = true
	delete(w.e.watchers, w)
	w.wakeLocked()
}

// Next blocks until the next message: a snapshot (first, and after falling
// behind) or a change. After [Watcher.Close] it returns [ErrClosed] at
// once. When the engine closes, it first delivers what was pending (the
// changes made while closing, or a final snapshot if the watcher had
// fallen behind), then returns [ErrClosed]. It returns ctx's error when
// ctx ends.
func (w *Watcher) Next(ctx context.Context) (Change, error) {
	var one [1]Change
	batch, err := w.take(ctx, one[:0], 1)
	if err != nil {
		return Change{}, err
	}
	return batch[0], nil
}

// NextBatch is [Watcher.Next] for a reader that can send several messages at
// once: it blocks until there is at least one message, then appends every
// message waiting at that moment to buf, in order, and returns it. A
// snapshot always comes alone. A server streaming to many watchers writes
// (and flushes) once per batch instead of once per change.
func (w *Watcher) NextBatch(ctx context.Context, buf []Change) ([]Change, error) {
	return w.take(ctx, buf, w.e.cfg.WatchBuffer)
}

// take waits for at least one message and appends up to max of them to buf.
func (w *Watcher) take(ctx context.Context, buf []Change, max int) ([]Change, error) {
	for {
		w.e.mu.Lock()
		if w.resync {
			w.resync = false
			c := Change{Kind: ChangeSnapshot, Snapshot: w.e.snapshotLocked(), Time: time.Now()}
			w.e.mu.Unlock()
			return append(buf, c), nil
		}
		if len(w.pending) > 0 {
			n := min(max, len(w.pending))
			buf = append(buf, w.pending[:n]...)
			clear(w.pending[:n])
			w.pending = w.pending[n:]
			if len(w.pending) == 0 {
				w.pending = nil // let a burst's backlog go
			}
			w.e.mu.Unlock()
			return buf, nil
		}
		if w.closed {
			w.e.mu.Unlock()
			return buf, ErrClosed
		}
		w.e.mu.Unlock()
		select {
		case <-w.wake:
		case <-ctx.Done():
			return buf, ctx.Err()
		}
	}
}

// Resyncs reports how many times this watcher fell behind and was resynced.
func (w *Watcher) Resyncs() int {
	w.e.mu.Lock()
	defer w.e.mu.Unlock()
	return w.resyncs
}

// Close ends the watcher and discards what it has not read: Next returns
// [ErrClosed] from then on. Idempotent.
func (w *Watcher) Close() {
	w.e.mu.Lock()
	defer w.e.mu.Unlock()
	w.pending, w.resync = nil, false
	w.closeLocked()
}
