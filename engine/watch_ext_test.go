package engine_test

import (
	"context"
	"errors"
	"slices"
	"strconv"
	"testing"
	"time"

	"github.com/vmre/vmre/engine"
)

func TestWatchSnapshotThenChanges(t *testing.T) {
	t.Parallel()
	l := &fakeLauncher{}
	e := newEngine(t, l, nil)
	first, err := e.Launch(t.Context(), spec)
	if err != nil {
		t.Fatal(err)
	}
	w := e.Watch()
	defer w.Close()

	snap := next(t, w)
	if snap.Kind != engine.ChangeSnapshot || len(snap.Snapshot) != 1 || snap.Snapshot[0].ID != first.ID ||
		snap.Snapshot[0].State != engine.StateRunning {
		t.Fatalf("first message = %+v, want a snapshot with r1 running", snap)
	}

	if _, err := e.Stop(t.Context(), first.ID); err != nil {
		t.Fatal(err)
	}
	if _, err := e.Launch(t.Context(), spec); err != nil {
		t.Fatal(err)
	}
	want := []struct {
		id    string
		state engine.State
	}{
		{"r1", engine.StateStopping}, {"r1", engine.StateExited},
		{"r2", engine.StateStarting}, {"r2", engine.StateRunning},
	}
	for _, w2 := range want {
		c := next(t, w)
		if c.Kind != engine.ChangeUpdated || c.Runtime.ID != w2.id || c.Runtime.State != w2.state || c.Event.State != w2.state {
			t.Fatalf("change = %+v, want %s %v", c, w2.id, w2.state)
		}
	}
	ctx, cancel := context.WithTimeout(t.Context(), 20*time.Millisecond)
	defer cancel()
	if c, err := w.Next(ctx); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("unexpected extra message %+v (%v)", c, err)
	}
}

// A watcher that never reads must not slow the engine down; when it reads
// again it gets a fresh, correct snapshot instead of a stale backlog.
func TestSlowWatcherDoesNotBlockEngine(t *testing.T) {
	t.Parallel()
	e := newEngine(t, nil, func(c *engine.Config) { c.WatchBuffer = 4 })
	slow := e.Watch()
	defer slow.Close()
	next(t, slow) // the initial snapshot; then it stops reading

	done := make(chan struct{})
	go func() {
		defer close(done)
		for i := range 1000 {
			if _, err := e.Attach(42, "127.0.0.1:"+strconv.Itoa(10000+i%200), "peer"); err != nil {
				t.Errorf("Attach %d: %v", i, err)
				return
			}
		}
	}()
	select {
	case <-done:
	case <-time.After(eventWait):
		t.Fatal("engine blocked by a watcher that does not read")
	}

	c := next(t, slow)
	if c.Kind != engine.ChangeSnapshot || len(c.Snapshot) != 200 {
		t.Fatalf("after falling behind: kind %v with %d runtimes, want a snapshot of 200", c.Kind, len(c.Snapshot))
	}
	if slow.Resyncs() == 0 {
		t.Fatal("Resyncs() = 0")
	}
	// After the resync the watcher follows changes again.
	if _, err := e.Attach(42, "127.0.0.1:9", "peer"); err != nil {
		t.Fatal(err)
	}
	if c := next(t, slow); c.Kind != engine.ChangeUpdated || c.Runtime.VMAddr != "127.0.0.1:9" {
		t.Fatalf("change after resync = %+v", c)
	}
}

func TestWatcherClose(t *testing.T) {
	t.Parallel()
	e := newEngine(t, nil, nil)
	w := e.Watch()
	errc := make(chan error, 1)
	next(t, w)
	go func() {
		_, err := w.Next(context.Background())
		errc <- err
	}()
	w.Close()
	select {
	case err := <-errc:
		if !errors.Is(err, engine.ErrClosed) {
			t.Fatalf("Next after Close: %v", err)
		}
	case <-time.After(eventWait):
		t.Fatal("Next did not return after Close")
	}
}

// NextBatch hands over everything waiting at once, in order; a snapshot
// comes alone.
func TestWatcherNextBatch(t *testing.T) {
	t.Parallel()
	l := &fakeLauncher{}
	e := newEngine(t, l, nil)
	w := e.Watch()
	defer w.Close()

	first, err := e.Launch(t.Context(), spec) // starting, running: both wait behind the snapshot
	if err != nil {
		t.Fatal(err)
	}
	batch, err := w.NextBatch(t.Context(), nil)
	if err != nil {
		t.Fatal(err)
	}
	if len(batch) != 1 || batch[0].Kind != engine.ChangeSnapshot || len(batch[0].Snapshot) != 1 {
		t.Fatalf("first batch = %+v, want the snapshot alone", batch)
	}

	if _, err := e.Stop(t.Context(), first.ID); err != nil {
		t.Fatal(err)
	}
	buf := make([]engine.Change, 0, 1) // appended to, so it may grow
	batch, err = w.NextBatch(t.Context(), buf)
	if err != nil {
		t.Fatal(err)
	}
	want := []engine.State{engine.StateStopping, engine.StateExited}
	if len(batch) != len(want) {
		t.Fatalf("batch has %d changes, want %d: %+v", len(batch), len(want), batch)
	}
	for i, s := range want {
		if batch[i].Kind != engine.ChangeUpdated || batch[i].Runtime.State != s {
			t.Fatalf("batch[%d] = %+v, want %v", i, batch[i], s)
		}
	}

	ctx, cancel := context.WithTimeout(t.Context(), 20*time.Millisecond)
	defer cancel()
	if batch, err := w.NextBatch(ctx, nil); !errors.Is(err, context.DeadlineExceeded) || len(batch) != 0 {
		t.Fatalf("NextBatch with nothing waiting = %+v, %v", batch, err)
	}
	w.Close()
	if _, err := w.NextBatch(t.Context(), nil); !errors.Is(err, engine.ErrClosed) {
		t.Fatalf("NextBatch after Close: %v", err)
	}
}

// TestChangeSeq: every watcher gets a change with the same Seq, Seqs grow
// by one per change, and snapshots carry 0.
func TestChangeSeq(t *testing.T) {
	t.Parallel()
	e := newEngine(t, &fakeLauncher{}, nil)
	a, b := e.Watch(), e.Watch()
	defer a.Close()
	defer b.Close()
	for _, w := range []*engine.Watcher{a, b} {
		if c := next(t, w); c.Kind != engine.ChangeSnapshot || c.Seq != 0 {
			t.Fatalf("first message = kind %v seq %d, want a snapshot with seq 0", c.Kind, c.Seq)
		}
	}
	if _, err := e.Launch(t.Context(), spec); err != nil { // starting, running
		t.Fatal(err)
	}
	var prev uint64
	for i := range 2 {
		ca, cb := next(t, a), next(t, b)
		if ca.Seq == 0 || ca.Seq != cb.Seq || ca.Runtime.State != cb.Runtime.State {
			t.Fatalf("change %d: seq %d (%v) and %d (%v), want the same non-zero seq", i, ca.Seq, ca.Runtime.State, cb.Seq, cb.Runtime.State)
		}
		if i > 0 && ca.Seq != prev+1 {
			t.Fatalf("change %d: seq %d after %d", i, ca.Seq, prev)
		}
		prev = ca.Seq
	}
}

// TestWatcherSeesEngineClose: the changes Engine.Close makes (every
// runtime stopping, then exited) reach a watcher before it ends, as List
// shows them; a watcher closed by its owner ends at once instead.
func TestWatcherSeesEngineClose(t *testing.T) {
	t.Parallel()
	t.Run("engine close delivers pending changes", func(t *testing.T) {
		t.Parallel()
		e := newEngine(t, &fakeLauncher{}, nil)
		ids := map[string]bool{}
		for range 2 {
			rt, err := e.Launch(t.Context(), spec)
			if err != nil {
				t.Fatal(err)
			}
			ids[rt.ID] = true
		}
		w := e.Watch()
		defer w.Close()
		next(t, w) // snapshot

		e.Close(t.Context())
		seen := map[string][]engine.State{}
		for {
			c, err := w.Next(t.Context())
			if errors.Is(err, engine.ErrClosed) {
				break
			}
			if err != nil {
				t.Fatalf("Next: %v", err)
			}
			if c.Kind != engine.ChangeUpdated || !ids[c.Runtime.ID] {
				t.Fatalf("unexpected change %+v", c)
			}
			seen[c.Runtime.ID] = append(seen[c.Runtime.ID], c.Runtime.State)
		}
		want := []engine.State{engine.StateStopping, engine.StateExited}
		for id := range ids {
			if !slices.Equal(seen[id], want) {
				t.Fatalf("%s: watcher saw %v, want %v", id, seen[id], want)
			}
		}
		for _, rt := range e.List() {
			if rt.State != engine.StateExited {
				t.Fatalf("List after Close: %+v", rt)
			}
		}
	})
	t.Run("watcher close discards them", func(t *testing.T) {
		t.Parallel()
		e := newEngine(t, &fakeLauncher{}, nil)
		w := e.Watch()
		next(t, w)                                             // snapshot
		if _, err := e.Launch(t.Context(), spec); err != nil { // starting, running: pending
			t.Fatal(err)
		}
		w.Close()
		if c, err := w.Next(t.Context()); !errors.Is(err, engine.ErrClosed) {
			t.Fatalf("Next after Close = %+v, %v; want ErrClosed", c, err)
		}
	})
}
