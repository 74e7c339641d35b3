package engine_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"os"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/rs/zerolog"
	"github.com/vmre/vmre"
	"github.com/vmre/vmre/engine"
	"github.com/vmre/vmre/internal/syncbuf"
	"github.com/vmre/vmre/subprocess"
	"go.uber.org/goleak"
)

func TestMain(m *testing.M) {
	if mode := os.Getenv(childEnv); mode != "" {
		os.Exit(child(mode))
	}
	// Children are this test binary; built with -race, each would sleep
	// 1 s at exit (GORACE's atexit_sleep_ms) and slow every graceful stop.
	if err := os.Setenv("GORACE", strings.TrimSpace(os.Getenv("GORACE")+" atexit_sleep_ms=0")); err != nil {
		panic(err)
	}
	// The launcher keeps two process-wide helpers (a spawner thread and the
	// orphan watchdog) for the life of the program.
	goleak.VerifyTestMain(m,
		goleak.IgnoreAnyFunction(subprocess.SpawnerFunc),
		goleak.IgnoreAnyFunction(subprocess.WatchdogFunc))
}

var spec = engine.Spec{Path: "/opt/vms/examplevm", Args: []string{"--flag"}}

func states(evs []engine.Event) []engine.State {
	out := make([]engine.State, len(evs))
	for i, ev := range evs {
		out[i] = ev.State
	}
	return out
}

func TestLaunchStop(t *testing.T) {
	t.Parallel()
	l := &fakeLauncher{}
	manager := vmre.NewManager()
	e := newEngine(t, l, func(c *engine.Config) { c.Manager = manager })

	rt, err := e.Launch(t.Context(), spec)
	if err != nil {
		t.Fatalf("Launch: %v", err)
	}
	if rt.ID != "r1" || rt.Name != "examplevm" || rt.State != engine.StateRunning || rt.Pid == 0 ||
		rt.VMAddr == "" || rt.ProtocolVersion != 42 || rt.HandshakeDuration != time.Millisecond ||
		!slices.Equal(rt.Command, []string{"/opt/vms/examplevm", "--flag"}) || rt.Exit != nil {
		t.Fatalf("launched runtime = %+v", rt)
	}
	if n := manager.Len(); n != 1 {
		t.Fatalf("manager.Len() = %d, want 1", n)
	}
	if n := e.LiveCount(); n != 1 {
		t.Fatalf("LiveCount() = %d, want 1", n)
	}

	rt, err = e.Stop(t.Context(), rt.ID)
	if err != nil {
		t.Fatalf("Stop: %v", err)
	}
	if rt.State != engine.StateExited || rt.Exit == nil || rt.Exit.Signal != "terminated" || rt.ExitedAt.IsZero() || rt.LastError != "" ||
		rt.End != engine.EndStopped || rt.StopDuration <= 0 || rt.Exit.ForcedKill {
		t.Fatalf("stopped runtime = %+v", rt)
	}
	// Exited runtimes leave the live set and the Manager but stay listed.
	if n := e.LiveCount(); n != 0 {
		t.Fatalf("LiveCount() after stop = %d, want 0", n)
	}
	waitFor(t, func() bool { return manager.Len() == 0 })
	if list := e.List(); len(list) != 1 || list[0].State != engine.StateExited {
		t.Fatalf("List() = %+v", list)
	}
	_, evs, err := e.Get(rt.ID)
	if err != nil {
		t.Fatal(err)
	}
	want := []engine.State{engine.StateStarting, engine.StateRunning, engine.StateStopping, engine.StateExited}
	if got := states(evs); !slices.Equal(got, want) {
		t.Fatalf("event states = %v, want %v", got, want)
	}

	// Stop is idempotent on an ended runtime.
	again, err := e.Stop(t.Context(), rt.ID)
	if err != nil || again.State != engine.StateExited {
		t.Fatalf("second Stop = %+v, %v", again, err)
	}
	if n := l.proc(0).stops.Load(); n != 1 {
		t.Fatalf("process stopped %d times, want 1", n)
	}
}

func TestLaunchFailureKeepsEvidence(t *testing.T) {
	t.Parallel()
	exitErr := &vmre.ExitError{Pid: 77, ExitStatus: vmre.ExitStatus{Code: 3}, Tail: []vmre.TailLine{{Stream: "stderr", Text: "boom"}}}
	l := &fakeLauncher{steps: []fakeStep{{err: errors.Join(vmre.ErrHandshakeFailed, exitErr)}}}
	e := newEngine(t, l, nil)

	rt, err := e.Launch(t.Context(), spec)
	var got *vmre.ExitError
	if !errors.As(err, &got) || !errors.Is(err, vmre.ErrHandshakeFailed) {
		t.Fatalf("Launch error = %v, want the launcher's ExitError", err)
	}
	if rt.State != engine.StateFailed || rt.Exit == nil || rt.Exit.Code != 3 || rt.Pid != 77 || rt.LastError == "" ||
		rt.End != engine.EndLaunchFailed || !errors.Is(rt.LaunchErr, vmre.ErrProcessExited) || rt.StopDuration != 0 {
		t.Fatalf("failed runtime = %+v", rt)
	}
	if e.LiveCount() != 0 {
		t.Fatal("a failed launch counts as live")
	}
}

func TestExitOnItsOwn(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name      string
		exit      vmre.ExitStatus
		wantState engine.State
		wantEnd   engine.End
	}{
		{name: "clean exit", exit: vmre.ExitStatus{Code: 0}, wantState: engine.StateExited, wantEnd: engine.EndExited},
		{name: "non-zero", exit: vmre.ExitStatus{Code: 2}, wantState: engine.StateFailed, wantEnd: engine.EndFailed},
		{name: "signal", exit: vmre.ExitStatus{Code: -1, Signal: "killed"}, wantState: engine.StateFailed, wantEnd: engine.EndFailed},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			l := &fakeLauncher{}
			e := newEngine(t, l, nil)
			rt, err := e.Launch(t.Context(), spec)
			if err != nil {
				t.Fatal(err)
			}
			w := e.Watch()
			defer w.Close()
			next(t, w) // snapshot
			l.proc(0).end(tt.exit)
			c := next(t, w)
			if c.Kind != engine.ChangeUpdated || c.Runtime.ID != rt.ID || c.Runtime.State != tt.wantState ||
				c.Runtime.Exit == nil || *c.Runtime.Exit != tt.exit || c.Runtime.End != tt.wantEnd || c.Runtime.StopDuration != 0 {
				t.Fatalf("change = %+v", c)
			}
			if (tt.wantState == engine.StateFailed) != (c.Runtime.LastError != "") {
				t.Fatalf("last error = %q for state %v", c.Runtime.LastError, tt.wantState)
			}
		})
	}
}

func TestRestartKeepsIDNewPid(t *testing.T) {
	t.Parallel()
	l := &fakeLauncher{}
	e := newEngine(t, l, nil)
	first, err := e.Launch(t.Context(), spec)
	if err != nil {
		t.Fatal(err)
	}
	second, err := e.Restart(t.Context(), first.ID)
	if err != nil {
		t.Fatalf("Restart: %v", err)
	}
	if second.ID != first.ID || second.Pid == first.Pid || second.State != engine.StateRunning || second.Restarts != 1 || second.Exit != nil {
		t.Fatalf("restarted = %+v (first %+v)", second, first)
	}
	if n := l.proc(0).stops.Load(); n != 1 {
		t.Fatalf("old process stopped %d times, want 1", n)
	}
	if e.LiveCount() != 1 || len(e.List()) != 1 {
		t.Fatalf("live %d, listed %d; want 1, 1", e.LiveCount(), len(e.List()))
	}

	// A runtime that ended on its own can be restarted from the history.
	l.proc(1).end(vmre.ExitStatus{Code: 1})
	waitFor(t, func() bool { return e.LiveCount() == 0 })
	third, err := e.Restart(t.Context(), first.ID)
	if err != nil || third.State != engine.StateRunning || third.Restarts != 2 || third.LastError != "" {
		t.Fatalf("restart from history = %+v, %v", third, err)
	}
	if e.LiveCount() != 1 {
		t.Fatalf("LiveCount() = %d after restart from history", e.LiveCount())
	}
}

// TestStopWhileStarting: a Stop during the handshake ends the launch as a
// stop, and the log says so at info, not as a failed launch.
func TestStopWhileStarting(t *testing.T) {
	t.Parallel()
	l := &fakeLauncher{steps: []fakeStep{{hold: make(chan struct{})}}}
	var log syncbuf.Buffer
	e := newEngine(t, l, func(c *engine.Config) { c.Log = zerolog.New(&log) })
	launched := make(chan error, 1)
	go func() {
		_, err := e.Launch(context.Background(), spec)
		launched <- err
	}()
	waitFor(t, func() bool { return len(e.List()) == 1 && e.List()[0].State == engine.StateStarting })

	rt, err := e.Stop(t.Context(), "r1")
	if err != nil || rt.State != engine.StateExited {
		t.Fatalf("Stop while starting = %+v, %v", rt, err)
	}
	if err := <-launched; !errors.Is(err, engine.ErrStopped) {
		t.Fatalf("Launch error = %v, want ErrStopped", err)
	}
	if got := log.String(); strings.Contains(got, `"launch failed"`) ||
		!strings.Contains(got, `{"level":"info","id":"r1","vm":"examplevm","error":"context canceled","message":"launch stopped before its handshake"}`) {
		t.Errorf("log of a launch stopped while starting:\n%s", got)
	}
}

func TestUnknownRuntime(t *testing.T) {
	t.Parallel()
	e := newEngine(t, &fakeLauncher{}, nil)
	if _, err := e.Stop(t.Context(), "r9"); !errors.Is(err, engine.ErrUnknownRuntime) {
		t.Fatalf("Stop: %v", err)
	}
	if _, err := e.Restart(t.Context(), "r9"); !errors.Is(err, engine.ErrUnknownRuntime) {
		t.Fatalf("Restart: %v", err)
	}
	if _, _, err := e.Get("r9"); !errors.Is(err, engine.ErrUnknownRuntime) {
		t.Fatalf("Get: %v", err)
	}
	if _, _, err := e.TailOutput("r9", 10, true, engine.OutputFilter{}); !errors.Is(err, engine.ErrUnknownRuntime) {
		t.Fatalf("TailOutput: %v", err)
	}
}

func TestHistoryIsBounded(t *testing.T) {
	t.Parallel()
	e := newEngine(t, &fakeLauncher{}, func(c *engine.Config) { c.History = 2 })
	w := e.Watch()
	defer w.Close()
	next(t, w)
	for range 3 {
		rt, err := e.Launch(t.Context(), spec)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := e.Stop(t.Context(), rt.ID); err != nil {
			t.Fatal(err)
		}
	}
	var ids []string
	for _, rt := range e.List() {
		ids = append(ids, rt.ID)
	}
	if !slices.Equal(ids, []string{"r2", "r3"}) {
		t.Fatalf("listed ids = %v, want [r2 r3]", ids)
	}
	for {
		c := next(t, w)
		if c.Kind == engine.ChangeRemoved {
			if c.RemovedID != "r1" {
				t.Fatalf("removed %q, want r1", c.RemovedID)
			}
			break
		}
	}
}

func TestAttach(t *testing.T) {
	t.Parallel()
	e := newEngine(t, nil, func(c *engine.Config) { c.MaxAttached = 2 })

	rt, err := e.Attach(42, "127.0.0.1:50001", "127.0.0.1:40000")
	if err != nil {
		t.Fatalf("Attach: %v", err)
	}
	if rt.State != engine.StateAttached || !rt.Attached || rt.VMAddr != "127.0.0.1:50001" || rt.PeerAddr != "127.0.0.1:40000" {
		t.Fatalf("attached = %+v", rt)
	}
	if _, err := e.Stop(t.Context(), rt.ID); !errors.Is(err, engine.ErrAttached) {
		t.Fatalf("Stop of attached runtime: %v, want ErrAttached", err)
	}
	if _, err := e.Restart(t.Context(), rt.ID); !errors.Is(err, engine.ErrAttached) {
		t.Fatalf("Restart of attached runtime: %v, want ErrAttached", err)
	}
	// The same VM address again refreshes the runtime.
	again, err := e.Attach(42, "127.0.0.1:50001", "127.0.0.1:40001")
	if err != nil || again.ID != rt.ID || again.PeerAddr != "127.0.0.1:40001" {
		t.Fatalf("repeated Attach = %+v, %v", again, err)
	}
	var mismatch *vmre.VersionMismatchError
	if _, err := e.Attach(41, "127.0.0.1:50002", ""); !errors.As(err, &mismatch) || mismatch.Got != 41 {
		t.Fatalf("Attach with version 41: %v", err)
	}
	if _, err := e.Attach(42, "127.0.0.1:50002", ""); err != nil {
		t.Fatal(err)
	}
	if e.LiveCount() != 2 {
		t.Fatalf("LiveCount() = %d", e.LiveCount())
	}
}

// TestAttachForgetsOldestWhenFull: the engine cannot see attached plugins
// exit, so at the cap a new handshake makes it forget the attached runtime
// whose last handshake is the oldest (not the oldest attached), with a
// removal for watchers and a log line; handshakes from ever new addresses
// keep being accepted and the count stays at the cap.
func TestAttachForgetsOldestWhenFull(t *testing.T) {
	t.Parallel()
	var logs bytes.Buffer // Attach logs on the calling goroutine only
	e, err := engine.New(engine.Config{MaxAttached: 3, Log: zerolog.New(&logs)})
	if err != nil {
		t.Fatal(err)
	}
	defer e.Close(t.Context())

	var ids []string
	for _, addr := range []string{"127.0.0.1:50001", "127.0.0.1:50002", "127.0.0.1:50003"} {
		rt, err := e.Attach(42, addr, "peer")
		if err != nil {
			t.Fatal(err)
		}
		ids = append(ids, rt.ID)
	}
	if _, err := e.Attach(42, "127.0.0.1:50001", "peer"); err != nil { // 50002 now has the oldest handshake
		t.Fatal(err)
	}
	w := e.Watch()
	defer w.Close()
	next(t, w) // snapshot

	logs.Reset()
	fourth, err := e.Attach(42, "127.0.0.1:50004", "peer")
	if err != nil {
		t.Fatalf("Attach beyond the cap: %v", err)
	}
	if c := next(t, w); c.Kind != engine.ChangeRemoved || c.RemovedID != ids[1] {
		t.Fatalf("first change = %+v, want the removal of %s", c, ids[1])
	}
	if c := next(t, w); c.Kind != engine.ChangeUpdated || c.Runtime.ID != fourth.ID || c.Runtime.State != engine.StateAttached {
		t.Fatalf("second change = %+v, want %s attached", c, fourth.ID)
	}
	if _, _, err := e.Get(ids[1]); !errors.Is(err, engine.ErrUnknownRuntime) {
		t.Fatalf("Get of the forgotten runtime: %v, want ErrUnknownRuntime", err)
	}
	var listed []string
	for _, rt := range e.List() {
		listed = append(listed, rt.VMAddr)
	}
	if want := []string{"127.0.0.1:50001", "127.0.0.1:50003", "127.0.0.1:50004"}; !slices.Equal(listed, want) {
		t.Fatalf("listed %v, want %v", listed, want)
	}
	var forgot struct{ Level, ID, Addr, Message string }
	first, _, _ := bytes.Cut(logs.Bytes(), []byte("\n"))
	if err := json.Unmarshal(first, &forgot); err != nil || forgot.Level != "info" || forgot.ID != ids[1] ||
		forgot.Addr != "127.0.0.1:50002" || !strings.Contains(forgot.Message, "forget") {
		t.Fatalf("log line %s (%v), want an info line naming %s at 127.0.0.1:50002", first, err, ids[1])
	}

	// A long-running engine keeps accepting plugins at new addresses.
	for i := range 1000 {
		if _, err := e.Attach(42, "127.0.0.1:"+strconv.Itoa(20000+i), "peer"); err != nil {
			t.Fatalf("Attach %d: %v", i, err)
		}
	}
	if n := e.LiveCount(); n != 3 {
		t.Fatalf("LiveCount() = %d, want the cap of 3", n)
	}
}

func TestCloseStopsEverything(t *testing.T) {
	t.Parallel()
	l := &fakeLauncher{}
	e := newEngine(t, l, nil)
	for range 3 {
		if _, err := e.Launch(t.Context(), spec); err != nil {
			t.Fatal(err)
		}
	}
	w := e.Watch()
	e.Close(t.Context())
	for i := range 3 {
		select {
		case <-l.proc(i).Done():
		default:
			t.Fatalf("process %d still runs after Close", i)
		}
	}
	for _, rt := range e.List() {
		if rt.State != engine.StateExited {
			t.Fatalf("after Close: %+v", rt)
		}
	}
	if _, err := w.Next(t.Context()); !errors.Is(err, engine.ErrClosed) {
		// The snapshot may come first; then the watcher must end.
		if _, err := w.Next(t.Context()); !errors.Is(err, engine.ErrClosed) {
			t.Fatalf("watcher after Close: %v", err)
		}
	}
	if _, err := e.Launch(t.Context(), spec); !errors.Is(err, engine.ErrClosed) {
		t.Fatalf("Launch after Close: %v", err)
	}
}

func TestNewRejectsNegativeBounds(t *testing.T) {
	t.Parallel()
	if _, err := engine.New(engine.Config{History: -1}); !errors.Is(err, vmre.ErrInvalidConfig) {
		t.Fatalf("New: %v", err)
	}
}

// waitFor polls cond for up to eventWait; the engine updates state on its
// own goroutines, and these conditions have no channel to wait on.
func waitFor(t *testing.T, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(eventWait)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("condition not met within %v", eventWait)
		}
		time.Sleep(time.Millisecond)
	}
}

// TestRestartRacingEviction: with a history of one, every runtime that
// ends evicts the one that ended before it. A Restart whose runtime is
// evicted between its stop and its new launch must fail with
// ErrUnknownRuntime, not launch a process that List and Get cannot see
// (whose end would later make the history evict a missing entry). To hit
// that gap often, a second runtime ends as soon as a watcher sees the
// restarted one exit, racing the restart's relaunch. A restart that checks
// the runtime and then starts it in a second step fails this in most runs
// under -race and in about one run in four without it.
func TestRestartRacingEviction(t *testing.T) {
	t.Parallel()
	l := &fakeLauncher{}
	e := newEngine(t, l, func(c *engine.Config) { c.History = 1 })
	w := e.Watch()
	defer w.Close()

	type arm struct {
		id    string
		other *fakeProc
	}
	arms := make(chan arm, 1)
	watched := make(chan struct{})
	go func() {
		defer close(watched)
		var armed *arm
		for {
			c, err := w.Next(context.Background())
			if err != nil {
				return
			}
			if armed == nil {
				select {
				case a := <-arms:
					armed = &a
				default:
					continue
				}
			}
			if c.Kind == engine.ChangeSnapshot ||
				(c.Kind == engine.ChangeUpdated && c.Runtime.ID == armed.id && c.Runtime.State.Ended()) {
				armed.other.end(vmre.ExitStatus{})
				armed = nil
			}
		}
	}()

	const rounds = 5000
	target, err := e.Launch(t.Context(), spec)
	if err != nil {
		t.Fatal(err)
	}
	evicted := 0
	for round := range rounds {
		other, err := e.Launch(t.Context(), spec)
		if err != nil {
			t.Fatal(err)
		}
		arms <- arm{id: target.ID, other: l.procByPid(other.Pid)}
		rt, err := e.Restart(t.Context(), target.ID)
		switch {
		case errors.Is(err, engine.ErrUnknownRuntime):
			// Evicted before it could start again: take a new target.
			evicted++
			if target, err = e.Launch(t.Context(), spec); err != nil {
				t.Fatal(err)
			}
			continue
		case err != nil:
			t.Fatalf("round %d: Restart: %v", round, err)
		}
		// A restarted runtime runs, so it cannot have left the history.
		if got, _, err := e.Get(target.ID); err != nil || got.Pid != rt.Pid {
			t.Fatalf("round %d: after Restart of %s (pid %d): Get = %+v, %v", round, target.ID, rt.Pid, got, err)
		}
		target = rt
	}
	for _, rt := range e.List() {
		// Stopping one evicts the one stopped before it.
		if _, err := e.Stop(t.Context(), rt.ID); err != nil && !errors.Is(err, engine.ErrUnknownRuntime) {
			t.Fatal(err)
		}
	}
	if n := e.LiveCount(); n != 0 {
		t.Fatalf("LiveCount() = %d after stopping everything listed, want 0", n)
	}
	w.Close()
	<-watched
	t.Logf("target evicted in %d of %d restarts", evicted, rounds)
}

// TestStopOrRestartRacingLaunch: a Stop or Restart that finds a runtime
// the moment Launch has registered it must see it starting, not a blank
// record: a Stop then aborts the launch (rather than returning at once
// and letting it run), and a Restart stops it before launching again
// (rather than launching the same runtime twice). Landing in that moment
// is up to the scheduler: a launch that registers the runtime and marks it
// starting in two steps fails this in most runs, not all. A restart whose caller does not wait goes on in the
// engine; the Stop that follows must still leave nothing running.
func TestStopOrRestartRacingLaunch(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		op   func(e *engine.Engine, ctx context.Context, id string) (engine.Runtime, error)
	}{
		{name: "stop", op: (*engine.Engine).Stop},
		{name: "restart", op: (*engine.Engine).Restart},
		{name: "abandoned restart", op: func(e *engine.Engine, ctx context.Context, id string) (engine.Runtime, error) {
			// Accepted, then never waited for.
			if _, rt, err := e.AcceptRestart(ctx, id); err != nil {
				return rt, err
			}
			rt, _, err := e.Get(id)
			return rt, err
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			const rounds, attached = 200, 50
			l := &fakeLauncher{}
			e := newEngine(t, l, func(c *engine.Config) { c.History = rounds; c.MaxAttached = attached })
			// Keep e.mu busy, so that Launch often has to queue for it again
			// after registering the runtime, behind the racing call.
			for i := range attached {
				if _, err := e.Attach(vmre.ProtocolVersion, "127.0.0.1:"+strconv.Itoa(10000+i), ""); err != nil {
					t.Fatal(err)
				}
			}
			busy, stopBusy := make(chan struct{}), make(chan struct{})
			go func() {
				defer close(busy)
				for {
					select {
					case <-stopBusy:
						return
					default:
						e.List()
					}
				}
			}()
			defer func() { close(stopBusy); <-busy }()
			launched := make(chan error, 1)
			go func() {
				for range rounds {
					if _, err := e.Launch(t.Context(), spec); err != nil && !errors.Is(err, engine.ErrStopped) {
						launched <- err
						return
					}
				}
				launched <- nil
			}()
			for i := 1; i <= rounds; i++ {
				id := "r" + strconv.Itoa(attached+i)
				// Call as soon as the id exists, to land right after Launch
				// registered it.
				rt, err := tt.op(e, t.Context(), id)
				for errors.Is(err, engine.ErrUnknownRuntime) {
					rt, err = tt.op(e, t.Context(), id)
				}
				if err != nil && !errors.Is(err, engine.ErrStopped) && !errors.Is(err, context.Canceled) {
					t.Fatalf("%s %s: %v", tt.name, id, err)
				}
				if rt.State == 0 {
					t.Fatalf("%s %s returned a runtime in no state: %+v", tt.name, id, rt)
				}
				if rt, err = e.Stop(t.Context(), id); err != nil || !rt.State.Ended() {
					t.Fatalf("Stop %s = %+v, %v", id, rt, err)
				}
			}
			if err := <-launched; err != nil {
				t.Fatalf("Launch: %v", err)
			}
			// Every process launched was stopped: none runs unseen.
			l.mu.Lock()
			procs := slices.Clone(l.procs)
			l.mu.Unlock()
			for i, p := range procs {
				select {
				case <-p.Done():
				default:
					t.Fatalf("process %d (pid %d) still runs after every runtime was stopped", i, p.pid)
				}
			}
			if n := e.LiveCount(); n != attached {
				t.Fatalf("LiveCount() = %d, want the %d attached runtimes", n, attached)
			}
		})
	}
}

// TestStatesAreAllNamed: States lists each state once, every one named,
// so that whatever reports one line per state covers them all.
func TestStatesAreAllNamed(t *testing.T) {
	t.Parallel()
	named := make(map[string]engine.State)
	for _, s := range engine.States() {
		name := s.String()
		if name == "unknown" {
			t.Errorf("state %d has no name", int(s))
		}
		if other, ok := named[name]; ok {
			t.Errorf("states %d and %d are both %q", int(other), int(s), name)
		}
		named[name] = s
	}
	for _, s := range []engine.State{engine.StateStarting, engine.StateRunning, engine.StateStopping, engine.StateExited,
		engine.StateFailed, engine.StateAttached, engine.StateBackoff, engine.StateUnhealthy, engine.StateLost} {
		if named[s.String()] != s {
			t.Errorf("States() misses %v", s)
		}
	}
}
