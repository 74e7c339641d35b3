package engine_test

import (
	"context"
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/vmre/vmre"
	"github.com/vmre/vmre/engine"
)

// restartResult is what a Restart on another goroutine returned.
type restartResult struct {
	rt  engine.Runtime
	err error
}

// restartAsync calls Restart on a goroutine of its own.
func restartAsync(e *engine.Engine, ctx context.Context, id string) <-chan restartResult {
	res := make(chan restartResult, 1)
	go func() {
		rt, err := e.Restart(ctx, id)
		res <- restartResult{rt, err}
	}()
	return res
}

// result waits for a Restart started by restartAsync to return.
func result(t *testing.T, res <-chan restartResult) restartResult {
	t.Helper()
	select {
	case r := <-res:
		return r
	case <-time.After(eventWait):
		t.Fatal("Restart did not return after its ctx ended")
		return restartResult{}
	}
}

// expectState reads the watcher's next change and fails unless it moves
// runtime id to state. It returns the runtime as the change reports it.
func expectState(t *testing.T, w *engine.Watcher, id string, state engine.State) engine.Runtime {
	t.Helper()
	return expectStateWithin(t, w, id, state, eventWait)
}

// eventWait bounds a test's wait for an event that must come: only a hang
// is ruled out, as -race on two busy cores can take seconds to deliver.
const eventWait = 30 * time.Second

// expectStateWithin is expectState waiting up to d.
func expectStateWithin(t *testing.T, w *engine.Watcher, id string, state engine.State, d time.Duration) engine.Runtime {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), d)
	defer cancel()
	c, err := w.Next(ctx)
	if err != nil {
		t.Fatalf("waiting for %s to be %v: %v", id, state, err)
	}
	if c.Kind != engine.ChangeUpdated || c.Runtime.ID != id || c.Runtime.State != state {
		t.Fatalf("change = %+v, want %s %v", c, id, state)
	}
	return c.Runtime
}

// watchFromSnapshot returns a watcher whose snapshot has been read.
func watchFromSnapshot(t *testing.T, e *engine.Engine) *engine.Watcher {
	t.Helper()
	w := e.Watch()
	t.Cleanup(w.Close)
	if c := next(t, w); c.Kind != engine.ChangeSnapshot {
		t.Fatalf("first message = %+v, want a snapshot", c)
	}
	return w
}

// launchWatched starts an engine whose launcher follows steps, launches one
// runtime and watches it from its snapshot.
func launchWatched(t *testing.T, steps ...fakeStep) (*fakeLauncher, *engine.Engine, engine.Runtime, *engine.Watcher) {
	t.Helper()
	l := &fakeLauncher{steps: steps}
	e := newEngine(t, l, nil)
	first, err := e.Launch(t.Context(), spec)
	if err != nil {
		t.Fatal(err)
	}
	return l, e, first, watchFromSnapshot(t, e)
}

// killAndRelaunch ends p, the runtime's process that a restart holds in its
// stop, and waits for the runtime to exit and run again.
func killAndRelaunch(t *testing.T, w *engine.Watcher, p *fakeProc, id string) engine.Runtime {
	t.Helper()
	p.end(vmre.ExitStatus{Code: -1, Signal: "killed"})
	expectState(t, w, id, engine.StateExited)
	expectState(t, w, id, engine.StateStarting)
	return expectState(t, w, id, engine.StateRunning)
}

// TestRestartOutlivesItsCaller: a caller that stops waiting while the
// restart's stop is under way (an RPC deadline, a closed browser tab) gets
// the runtime as it is then and ctx's error, and the restart still
// completes: the runtime runs again, restarted once. When the stop was
// bound to the caller's ctx, the relaunch never happened and the runtime
// stayed exited.
func TestRestartOutlivesItsCaller(t *testing.T) {
	t.Parallel()
	// The first process ignores the restart's stop, as a plugin ignores
	// SIGTERM until its grace period ends.
	l, e, first, w := launchWatched(t, fakeStep{ignoreStops: 1}, fakeStep{})

	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	res := restartAsync(e, ctx, first.ID)
	expectState(t, w, first.ID, engine.StateStopping)
	cancel()
	r := result(t, res)
	if !errors.Is(r.err, context.Canceled) || r.rt.ID != first.ID || r.rt.State != engine.StateStopping || r.rt.Restarts != 0 {
		t.Fatalf("abandoned Restart = %+v, %v; want r1 stopping and context.Canceled", r.rt, r.err)
	}

	// The old process ends at last (the kill after the grace period), and
	// the restart goes on without its caller.
	running := killAndRelaunch(t, w, l.proc(0), first.ID)
	if running.Restarts != 1 || running.Pid != l.proc(1).pid {
		t.Fatalf("restarted = %+v, want restarts 1 and pid %d", running, l.proc(1).pid)
	}
	if got, _, err := e.Get(first.ID); err != nil || got.State != engine.StateRunning || got.Restarts != 1 {
		t.Fatalf("Get after the restart = %+v, %v", got, err)
	}
	if n := l.overlaps.Load(); n != 0 {
		t.Fatalf("%d launches while the old process still ran", n)
	}
}

// TestStopCancelsPendingRestart: a Stop made while a restart is under way
// wins, even when the restart's caller has gone: the restart launches
// nothing after it. Otherwise a client whose restart timed out, and which
// then stops the runtime, would see it come back.
func TestStopCancelsPendingRestart(t *testing.T) {
	t.Parallel()
	// The first process ignores both the restart's stop and the Stop.
	l, e, first, w := launchWatched(t, fakeStep{ignoreStops: 2}, fakeStep{})

	ctx, cancel := context.WithCancel(t.Context())
	res := restartAsync(e, ctx, first.ID)
	expectState(t, w, first.ID, engine.StateStopping)
	cancel()
	if r := result(t, res); !errors.Is(r.err, context.Canceled) {
		t.Fatalf("abandoned Restart: %v, want context.Canceled", r.err)
	}
	// A Stop whose caller does not wait either: the request is what counts.
	if rt, err := e.Stop(ctx, first.ID); !errors.Is(err, context.Canceled) || rt.State != engine.StateStopping {
		t.Fatalf("Stop = %+v, %v; want r1 stopping and context.Canceled", rt, err)
	}
	l.proc(0).end(vmre.ExitStatus{Code: -1, Signal: "killed"})
	expectState(t, w, first.ID, engine.StateExited)

	// Restarts of a runtime run one at a time, so this one ends after the
	// abandoned one: by then that one has relaunched or given up.
	rt, err := e.Restart(t.Context(), first.ID)
	if err != nil || rt.State != engine.StateRunning {
		t.Fatalf("Restart after the Stop = %+v, %v", rt, err)
	}
	if rt.Restarts != 1 || l.launches() != 2 {
		t.Fatalf("restarts %d, launches %d; want 1 and 2: the stopped restart relaunched", rt.Restarts, l.launches())
	}
	expectState(t, w, first.ID, engine.StateStarting)
	expectState(t, w, first.ID, engine.StateRunning)
}

// TestCloseEndsAbandonedRestart: Close during a restart whose caller has
// gone waits for it and ends it, whichever phase it is in: a relaunch that
// has not begun fails with ErrClosed, one in its handshake is aborted.
// Nothing runs after Close.
func TestCloseEndsAbandonedRestart(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		// steps: the first launch, then the relaunch.
		steps []fakeStep
		// reached are the states runtime r1 goes through, after stopping,
		// before the restart's caller gives up.
		reached      []engine.State
		wantLaunches int
	}{
		{
			name: "during the stop",
			// The process ignores the restart's stop but not Close's.
			steps:        []fakeStep{{ignoreStops: 1}},
			wantLaunches: 1,
		},
		{
			name:         "during the relaunch",
			steps:        []fakeStep{{}, {hold: make(chan struct{})}},
			reached:      []engine.State{engine.StateExited, engine.StateStarting},
			wantLaunches: 2,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			l := &fakeLauncher{steps: tt.steps}
			e := newEngine(t, l, nil)
			first, err := e.Launch(t.Context(), spec)
			if err != nil {
				t.Fatal(err)
			}
			w := watchFromSnapshot(t, e)
			ctx, cancel := context.WithCancel(t.Context())
			res := restartAsync(e, ctx, first.ID)
			expectState(t, w, first.ID, engine.StateStopping)
			for _, s := range tt.reached {
				expectState(t, w, first.ID, s)
			}
			cancel()
			if r := result(t, res); !errors.Is(r.err, context.Canceled) {
				t.Fatalf("abandoned Restart: %v, want context.Canceled", r.err)
			}

			closeCtx, cancelClose := context.WithTimeout(t.Context(), 5*time.Second)
			defer cancelClose()
			e.Close(closeCtx)
			if closeCtx.Err() != nil {
				t.Fatal("Close did not return before its ctx ended")
			}
			if n := l.launches(); n != tt.wantLaunches {
				t.Fatalf("%d launches, want %d", n, tt.wantLaunches)
			}
			if running := l.running(); len(running) > 0 {
				t.Fatalf("processes %v still run after Close", running)
			}
			if got, _, err := e.Get(first.ID); err != nil || !got.State.Ended() {
				t.Fatalf("after Close: %+v, %v", got, err)
			}
		})
	}
}

// TestConcurrentRestartsAndStops: Restarts and Stops of one runtime from
// many callers, some of whom give up at once, never run two processes for
// it at a time; a Restart told it succeeded gets the process its restart
// launched, and callers who gave up before asking launch nothing. Close
// then ends whatever is still under way.
func TestConcurrentRestartsAndStops(t *testing.T) {
	t.Parallel()
	l := &fakeLauncher{}
	e := newEngine(t, l, nil)
	first, err := e.Launch(t.Context(), spec)
	if err != nil {
		t.Fatal(err)
	}
	const callers, calls = 4, 100
	var (
		wg        sync.WaitGroup
		mu        sync.Mutex
		restarted int // Restarts that succeeded
	)
	for i := range callers {
		wg.Go(func() {
			for j := range calls {
				var err error
				switch {
				case (i+j)%4 == 0:
					_, err = e.Stop(t.Context(), first.ID)
				case (i+j)%3 == 0:
					// Accepted, then abandoned: the caller never waits.
					_, _, err = e.AcceptRestart(t.Context(), first.ID)
				default:
					before, _, _ := e.Get(first.ID)
					var rt engine.Runtime
					rt, err = e.Restart(t.Context(), first.ID)
					if err != nil {
						break
					}
					// A restart that began after this call: its own or
					// the waiting one it joined, never an older one. And
					// the process of the launch its count names.
					if rt.Restarts <= before.Restarts {
						t.Errorf("Restart after %d restarts returned restart %d", before.Restarts, rt.Restarts)
					}
					if p := l.procByPid(rt.Pid); p == nil || p.launch != rt.Restarts {
						t.Errorf("Restart returned %+v, not the process of launch %d", rt, rt.Restarts)
					}
					mu.Lock()
					restarted++
					mu.Unlock()
				}
				if err != nil && !errors.Is(err, engine.ErrStopped) {
					t.Errorf("caller %d call %d: %v", i, j, err)
					return
				}
			}
		})
	}
	wg.Wait()
	e.Close(t.Context())

	if n := l.overlaps.Load(); n != 0 {
		t.Fatalf("%d launches while an earlier process still ran", n)
	}
	got, _, err := e.Get(first.ID)
	if err != nil || !got.State.Ended() {
		t.Fatalf("after Close: %+v, %v", got, err)
	}
	if running := l.running(); len(running) > 0 {
		t.Fatalf("processes %v still run after Close", running)
	}
	t.Logf("%d restarts, %d Restarts succeeded", got.Restarts, restarted)
}

// TestRestartWithDoneCtx: a Restart whose ctx is already done when it
// arrives (a double-click whose tab is gone, a retry loop whose deadline
// has passed) does nothing: no stop, no launch, just ctx's error; it must
// not queue a stop and relaunch of its own.
func TestRestartWithDoneCtx(t *testing.T) {
	t.Parallel()
	canceled, cancel := context.WithCancel(t.Context())
	cancel()
	expired, cancelExpired := context.WithDeadline(t.Context(), time.Now().Add(-time.Second))
	defer cancelExpired()
	tests := []struct {
		name    string
		ctx     context.Context
		wantErr error
	}{
		{name: "canceled", ctx: canceled, wantErr: context.Canceled},
		{name: "deadline exceeded", ctx: expired, wantErr: context.DeadlineExceeded},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			// The first process ignores its first stop, which holds the
			// first restart in its stop until the test ends the process.
			l, e, first, w := launchWatched(t, fakeStep{ignoreStops: 1}, fakeStep{})
			// A restart asked for in earnest, held in its stop: a Restart
			// accepted now would queue a second one behind it.
			res := restartAsync(e, t.Context(), first.ID)
			expectState(t, w, first.ID, engine.StateStopping)
			for range 50 {
				rt, err := e.Restart(tt.ctx, first.ID)
				if !errors.Is(err, tt.wantErr) || rt.ID != first.ID || rt.Restarts != 0 {
					t.Fatalf("Restart = %+v, %v; want r1 unchanged and %v", rt, err, tt.wantErr)
				}
			}
			if e.RestartQueued(first.ID) {
				t.Fatal("a Restart with a done ctx queued a restart")
			}
			l.proc(0).end(vmre.ExitStatus{Code: -1, Signal: "killed"})
			if r := result(t, res); r.err != nil || r.rt.State != engine.StateRunning || r.rt.Restarts != 1 {
				t.Fatalf("Restart = %+v, %v; want r1 running, restarted once", r.rt, r.err)
			}
			if rt, err := e.Restart(t.Context(), first.ID); err != nil || rt.State != engine.StateRunning || rt.Restarts != 2 {
				t.Fatalf("second Restart = %+v, %v; want r1 running, restarted twice", rt, err)
			}
			// Before Close, whose Manager.Stop may stop it again while the
			// Manager has not yet seen it exit.
			if n := l.proc(0).stops.Load(); n != 1 {
				t.Fatalf("first process stopped %d times, want 1", n)
			}
			// Close waits for every restart the engine accepted.
			e.Close(t.Context())
			got, _, err := e.Get(first.ID)
			if err != nil || got.Restarts != 2 {
				t.Fatalf("after Close: %+v, %v; want restarted twice", got, err)
			}
			if n := l.launches(); n != 3 {
				t.Fatalf("%d launches, want 3: a Restart with a done ctx launched", n)
			}
		})
	}
}

// TestRestartsCoalesce: Restarts of a runtime accepted while another
// restart of it waits to begin join that one: one stop and relaunch, whose
// result they all get. A Restart accepted once that restart has begun its
// stop queues one more, which all later ones join in turn, so a restart
// asked for after a stop began still happens, once, and a double-click or
// a retry loop does not restart the plugin that many times in a row.
func TestRestartsCoalesce(t *testing.T) {
	t.Parallel()
	// The first two processes ignore their first stop, which holds the
	// restart stopping them until the test ends the process.
	l, e, first, w := launchWatched(t, fakeStep{ignoreStops: 1}, fakeStep{ignoreStops: 1}, fakeStep{})

	// accept has n Restarts accepted, then waits for them on goroutines.
	accept := func(n int) []<-chan restartResult {
		t.Helper()
		out := make([]<-chan restartResult, n)
		for i := range out {
			wait, rt, err := e.AcceptRestart(t.Context(), first.ID)
			if err != nil {
				t.Fatalf("Restart = %+v, %v", rt, err)
			}
			res := make(chan restartResult, 1)
			go func() {
				rt, err := wait()
				res <- restartResult{rt, err}
			}()
			out[i] = res
		}
		return out
	}
	// check waits for the Restarts and fails unless each got the process
	// of launch number restarts, running.
	check := func(what string, results []<-chan restartResult, restarts int) {
		t.Helper()
		want := l.proc(restarts).pid
		for i, res := range results {
			r := result(t, res)
			if r.err != nil || r.rt.State != engine.StateRunning || r.rt.Restarts != restarts || r.rt.Pid != want {
				t.Fatalf("%s, Restart %d = %+v, %v; want running, restarts %d, pid %d", what, i, r.rt, r.err, restarts, want)
			}
		}
	}
	const n = 5

	// A restart that has begun its stop, held there.
	running := restartAsync(e, t.Context(), first.ID)
	expectState(t, w, first.ID, engine.StateStopping)
	// n Restarts now: one restart waiting to begin, the others join it.
	queued := accept(n)

	killAndRelaunch(t, w, l.proc(0), first.ID)
	check("the running restart", []<-chan restartResult{running}, 1)

	// The queued restart begins its stop, held there; n more Restarts
	// queue one restart after it.
	expectState(t, w, first.ID, engine.StateStopping)
	later := accept(n)

	killAndRelaunch(t, w, l.proc(1), first.ID)
	check("queued", queued, 2)

	expectState(t, w, first.ID, engine.StateStopping)
	expectState(t, w, first.ID, engine.StateExited)
	expectState(t, w, first.ID, engine.StateStarting)
	expectState(t, w, first.ID, engine.StateRunning)
	check("queued after the stop began", later, 3)

	// Close waits for every restart the engine accepted: none is left.
	e.Close(t.Context())
	if n := l.launches(); n != 4 {
		t.Fatalf("%d launches, want 4: the first and three restarts", n)
	}
	if n := l.overlaps.Load(); n != 0 {
		t.Fatalf("%d launches while an earlier process still ran", n)
	}
}

// TestStopEndsQueuedRestart: a Stop ends a restart queued behind the one
// under way at once, and that one after its stop; both fail with
// ErrStopped, saying a stop cancelled them rather than that a handshake
// was cut short. Nothing is launched.
func TestStopEndsQueuedRestart(t *testing.T) {
	t.Parallel()
	// The first process ignores the restart's stop and the Stop.
	l, e, first, w := launchWatched(t, fakeStep{ignoreStops: 2}, fakeStep{})
	running := restartAsync(e, t.Context(), first.ID)
	expectState(t, w, first.ID, engine.StateStopping)
	// Bounded, so that a queued restart the Stop fails to end fails the
	// test rather than hanging it.
	queuedCtx, cancelQueued := context.WithTimeout(t.Context(), time.Minute)
	defer cancelQueued()
	wait, _, err := e.AcceptRestart(queuedCtx, first.ID)
	if err != nil {
		t.Fatal(err)
	}

	// The Stop's caller does not wait: the request is what counts.
	stopCtx, cancel := context.WithCancel(t.Context())
	cancel()
	if _, err := e.Stop(stopCtx, first.ID); !errors.Is(err, context.Canceled) {
		t.Fatalf("Stop: %v, want context.Canceled", err)
	}
	const want = "restart r1: cancelled by a stop"
	// The first process still runs: the queued restart ended at once.
	if _, err := wait(); !errors.Is(err, engine.ErrStopped) || err.Error() != want {
		t.Fatalf("queued Restart: %v, want %q (ErrStopped)", err, want)
	}
	l.proc(0).end(vmre.ExitStatus{Code: -1, Signal: "killed"})
	expectState(t, w, first.ID, engine.StateExited)
	if r := result(t, running); !errors.Is(r.err, engine.ErrStopped) || r.err.Error() != want || r.rt.State != engine.StateExited {
		t.Fatalf("Restart under way = %+v, %v; want exited and %q (ErrStopped)", r.rt, r.err, want)
	}
	e.Close(t.Context())
	if n := l.launches(); n != 1 {
		t.Fatalf("%d launches, want 1", n)
	}
}
