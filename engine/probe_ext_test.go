package engine_test

import (
	"context"
	"net"
	"slices"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/vmre/vmre/engine"
	"google.golang.org/grpc"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
)

// vmServer is a real grpc-go VM server: with health, its status is set
// through health; hang makes its Check calls wait until they time out, as
// a VM server that stops answering while its process lives.
type vmServer struct {
	addr   string
	srv    *grpc.Server
	health *health.Server
	hang   atomic.Bool
	checks atomic.Int32
	conns  atomic.Int32 // connections accepted
}

type countingListener struct {
	net.Listener
	n *atomic.Int32
}

func (l countingListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err == nil {
		l.n.Add(1)
	}
	return c, err
}

type hangingHealth struct {
	*health.Server
	vm *vmServer
}

func (h hangingHealth) Check(ctx context.Context, req *healthpb.HealthCheckRequest) (*healthpb.HealthCheckResponse, error) {
	h.vm.checks.Add(1)
	if h.vm.hang.Load() {
		<-ctx.Done()
		return nil, ctx.Err()
	}
	return h.Server.Check(ctx, req)
}

func startVMServer(t *testing.T, withHealth bool) *vmServer {
	t.Helper()
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	vm := &vmServer{addr: lis.Addr().String(), srv: grpc.NewServer(), health: health.NewServer()}
	if withHealth {
		healthpb.RegisterHealthServer(vm.srv, hangingHealth{vm.health, vm})
	} else {
		// A VM server with some service, but not health.
		vm.srv.RegisterService(&grpc.ServiceDesc{ServiceName: "vm.VM", HandlerType: (*any)(nil)}, struct{}{})
	}
	go func() { _ = vm.srv.Serve(countingListener{lis, &vm.conns}) }()
	t.Cleanup(vm.srv.Stop)
	return vm
}

func (vm *vmServer) set(s healthpb.HealthCheckResponse_ServingStatus) {
	vm.health.SetServingStatus("", s)
}

// probeOnce drains the clock's timer signal, moves the clock by d and
// waits until a timer is set again: the probe that d made due has
// finished and scheduled the next.
func probeOnce(t *testing.T, clock *fakeClock, d time.Duration) {
	t.Helper()
	select {
	case <-clock.added:
	default:
	}
	clock.advance(d)
	select {
	case <-clock.added:
	case <-time.After(10 * time.Second):
		t.Fatal("no probe scheduled after the clock moved")
	}
}

func TestLivenessFailureRestartsOnlyUnderPolicy(t *testing.T) {
	t.Parallel()
	// The timeout allows for a loaded machine: only the hanging server waits it out.
	check := engine.HealthCheck{Interval: 10 * time.Second, Timeout: 5 * time.Second, FailureThreshold: 2}
	for _, tc := range []struct {
		name    string
		mode    engine.RestartMode
		breakIt func(*vmServer)
		why     string
		// conns the 4 probes of the never case take: one, kept, unless a
		// probe timed out, whose connection is replaced (its stream may
		// have been cut mid-frame).
		conns int32
	}{
		{name: "not serving, on-failure", mode: engine.RestartOnFailure, breakIt: func(vm *vmServer) { vm.set(healthpb.HealthCheckResponse_NOT_SERVING) }, why: "NOT_SERVING"},
		{name: "not serving, never", mode: engine.RestartNever, breakIt: func(vm *vmServer) { vm.set(healthpb.HealthCheckResponse_NOT_SERVING) }, why: "NOT_SERVING", conns: 1},
		{name: "stops answering, on-failure", mode: engine.RestartOnFailure, breakIt: func(vm *vmServer) { vm.hang.Store(true) }, why: "deadline"},
		{name: "stops answering, never", mode: engine.RestartNever, breakIt: func(vm *vmServer) { vm.hang.Store(true) }, why: "deadline", conns: 3},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			vm := startVMServer(t, true)
			vm.set(healthpb.HealthCheckResponse_SERVING)
			l, _, clock, first, w := superviseWatched(t, engine.RestartPolicy{Mode: tc.mode}, check, fakeStep{addr: vm.addr})
			probeOnce(t, clock, check.Interval)
			expectHealth(t, w, first.ID, engine.StateRunning, engine.HealthServing)
			tc.breakIt(vm)
			clock.advance(check.Interval) // one failure: below the threshold
			expectHealthWithin(t, w, first.ID, engine.StateRunning, engine.HealthFailing, check.Timeout+eventWait)
			clock.advance(check.Interval)
			// A hanging server's probe ends with its timeout.
			rt := expectStateWithin(t, w, first.ID, engine.StateUnhealthy, check.Timeout+10*time.Second)
			if rt.Health != engine.HealthFailing || !strings.Contains(rt.LastError, tc.why) || rt.ProbeFailures != 2 {
				t.Fatalf("unhealthy: health %v, last error %q, %d probe failures; want failing, naming %q, 2", rt.Health, rt.LastError, rt.ProbeFailures, tc.why)
			}
			if tc.mode == engine.RestartNever {
				// Only marked: the process runs on, and a passing probe
				// makes it running again.
				if got := l.running(); len(got) != 1 {
					t.Fatalf("running processes = %v, want the first", got)
				}
				vm.hang.Store(false)
				vm.set(healthpb.HealthCheckResponse_SERVING)
				clock.advance(check.Interval)
				expectState(t, w, first.ID, engine.StateRunning)
				if n := vm.conns.Load(); n != tc.conns || vm.checks.Load() != 4 {
					t.Fatalf("4 probes took %d checks over %d connections, want 4 over %d", vm.checks.Load(), n, tc.conns)
				}
				return
			}
			expectState(t, w, first.ID, engine.StateStopping)
			rt = expectState(t, w, first.ID, engine.StateBackoff)
			if !strings.Contains(rt.LastError, "liveness") || rt.Failures != 1 || rt.End != engine.EndLiveness || rt.StopDuration <= 0 {
				t.Fatalf("backoff after liveness: last error %q, failures %d, end %v, stop %v", rt.LastError, rt.Failures, rt.End, rt.StopDuration)
			}
			vm.hang.Store(false)
			vm.set(healthpb.HealthCheckResponse_SERVING)
			clock.advance(time.Second)
			expectState(t, w, first.ID, engine.StateStarting)
			expectState(t, w, first.ID, engine.StateRunning)
		})
	}
}

func TestLivenessUnimplementedProbedOnce(t *testing.T) {
	t.Parallel()
	vm := startVMServer(t, false)
	check := engine.HealthCheck{Interval: time.Second}
	_, e, clock, first, w := superviseWatched(t, engine.RestartPolicy{Mode: engine.RestartOnFailure}, check, fakeStep{addr: vm.addr})
	clock.advance(check.Interval)
	c := next(t, w)
	if c.Kind != engine.ChangeUpdated || c.Runtime.State != engine.StateRunning || c.Runtime.Health != engine.HealthUnimplemented ||
		!strings.Contains(c.Event.Message, "no grpc.health.v1") {
		t.Fatalf("change = %+v, want an event that the VM serves no health", c)
	}
	if n := clock.pending(); n != 0 {
		t.Fatalf("%d timers pending after UNIMPLEMENTED, want none (no more probes)", n)
	}
	clock.advance(time.Hour)
	if rt, _, _ := e.Get(first.ID); rt.State != engine.StateRunning {
		t.Fatalf("state = %v, want running", rt.State)
	}
}

func TestAttachedRuntimeLostWhenItDies(t *testing.T) {
	t.Parallel()
	vm := startVMServer(t, true)
	vm.set(healthpb.HealthCheckResponse_SERVING)
	clock := newFakeClock()
	// The dead plugin's port refuses at once: the timeout bounds only the
	// healthy probe, which a loaded machine may slow.
	check := engine.HealthCheck{Interval: 10 * time.Second, Timeout: time.Minute, FailureThreshold: 3}
	e := newEngine(t, nil, func(c *engine.Config) { c.Clock = clock; c.SampleInterval = -1; c.AttachHealth = check })
	w := watchFromSnapshot(t, e)
	rt, err := e.Attach(42, vm.addr, "127.0.0.1:1")
	if err != nil {
		t.Fatal(err)
	}
	expectState(t, w, rt.ID, engine.StateAttached)
	probeOnce(t, clock, check.Interval)
	if vm.checks.Load() != 1 {
		t.Fatalf("checks = %d, want 1", vm.checks.Load())
	}
	expectHealth(t, w, rt.ID, engine.StateAttached, engine.HealthServing)
	vm.srv.Stop() // the plugin dies: its port refuses connections
	probeOnce(t, clock, check.Interval)
	expectHealth(t, w, rt.ID, engine.StateAttached, engine.HealthFailing)
	probeOnce(t, clock, check.Interval)
	clock.advance(check.Interval)
	expectState(t, w, rt.ID, engine.StateUnhealthy)
	if lost := expectState(t, w, rt.ID, engine.StateLost); lost.End != engine.EndLost || lost.ProbeFailures != 3 {
		t.Fatalf("lost: end %v, %d probe failures; want lost, 3", lost.End, lost.ProbeFailures)
	}
	if e.LiveCount() != 0 {
		t.Fatalf("live count = %d after the attached runtime was lost, want 0", e.LiveCount())
	}
}

// expectHealth reads the watcher's next change and fails unless it is an
// event leaving runtime id in state with health.
func expectHealth(t *testing.T, w *engine.Watcher, id string, state engine.State, health engine.Health) engine.Change {
	t.Helper()
	return expectHealthWithin(t, w, id, state, health, eventWait)
}

// expectHealthWithin is expectHealth waiting up to d.
func expectHealthWithin(t *testing.T, w *engine.Watcher, id string, state engine.State, health engine.Health, d time.Duration) engine.Change {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), d)
	defer cancel()
	c, err := w.Next(ctx)
	if err != nil {
		t.Fatalf("waiting for %s to be %v and %v: %v", id, state, health, err)
	}
	if c.Kind != engine.ChangeUpdated || c.Runtime.ID != id || c.Runtime.State != state || c.Runtime.Health != health {
		t.Fatalf("change = %+v, want %s %v %v", c, id, state, health)
	}
	return c
}

// TestHealthChangesReachWatchers: a probe that changes a runtime's health
// without changing its state (the first success, a first failure below
// the threshold, a success again) is an event watchers see; and a
// relaunched runtime's health is its new process's, unknown until probed,
// not the failing health of the process before it.
func TestHealthChangesReachWatchers(t *testing.T) {
	t.Parallel()
	vm := startVMServer(t, true)
	vm.set(healthpb.HealthCheckResponse_SERVING)
	check := engine.HealthCheck{Interval: 10 * time.Second, Timeout: 5 * time.Second, FailureThreshold: 3}
	l, _, clock, first, w := superviseWatched(t, engine.RestartPolicy{Mode: engine.RestartOnFailure}, check, fakeStep{addr: vm.addr})
	clock.advance(check.Interval)
	if c := expectHealth(t, w, first.ID, engine.StateRunning, engine.HealthServing); !strings.Contains(c.Event.Message, "passed") {
		t.Fatalf("event %q, want one saying the probe passed", c.Event.Message)
	}
	// The event is published with the next probe already scheduled.
	vm.set(healthpb.HealthCheckResponse_NOT_SERVING)
	clock.advance(check.Interval)
	if c := expectHealth(t, w, first.ID, engine.StateRunning, engine.HealthFailing); !strings.Contains(c.Event.Message, "NOT_SERVING") {
		t.Fatalf("event %q, want one naming NOT_SERVING", c.Event.Message)
	}
	// The same health again publishes nothing.
	probeOnce(t, clock, check.Interval)
	vm.set(healthpb.HealthCheckResponse_SERVING)
	clock.advance(check.Interval)
	expectHealth(t, w, first.ID, engine.StateRunning, engine.HealthServing)
	vm.set(healthpb.HealthCheckResponse_NOT_SERVING)
	clock.advance(check.Interval)
	expectHealth(t, w, first.ID, engine.StateRunning, engine.HealthFailing)

	l.proc(0).end(crashed)
	if rt := expectState(t, w, first.ID, engine.StateBackoff); rt.Health != engine.HealthFailing {
		t.Fatalf("health in backoff = %v, want the failing health the process ended with", rt.Health)
	}
	clock.advance(time.Minute)
	for _, state := range []engine.State{engine.StateStarting, engine.StateRunning} {
		if rt := expectState(t, w, first.ID, state); rt.Health != engine.HealthUnknown {
			t.Fatalf("relaunched runtime %v with health %v, want unknown until its first probe", state, rt.Health)
		}
	}
}

// TestProbesDueTogetherShareAWakeup: probes due within a tenth of their
// interval of each other run at once, on one timer, and stay together;
// a probe due later than that waits for its own time.
func TestProbesDueTogetherShareAWakeup(t *testing.T) {
	t.Parallel()
	vms := []*vmServer{startVMServer(t, true), startVMServer(t, true), startVMServer(t, true)}
	var steps []fakeStep
	for _, vm := range vms {
		vm.set(healthpb.HealthCheckResponse_SERVING)
		steps = append(steps, fakeStep{addr: vm.addr})
	}
	clock := newFakeClock()
	e := newEngine(t, &fakeLauncher{steps: steps}, func(c *engine.Config) { c.Clock = clock; c.SampleInterval = -1 })
	w := watchFromSnapshot(t, e)
	check := engine.HealthCheck{Interval: 10 * time.Second, Timeout: 5 * time.Second}
	// Launched at 0, 0.5 s and 2 s: probes due at 10 s, 10.5 s (within
	// the slack of a tenth of the interval) and 12 s.
	var ids []string
	for i, wait := range []time.Duration{0, 500 * time.Millisecond, 1500 * time.Millisecond} {
		clock.advance(wait)
		s := spec
		s.Name, s.Health = "vm-"+strconv.Itoa(i), check
		rt, err := e.Launch(t.Context(), s)
		if err != nil {
			t.Fatal(err)
		}
		ids = append(ids, rt.ID)
	}
	served := func(want ...string) {
		t.Helper()
		for len(want) > 0 {
			c := next(t, w)
			if c.Kind != engine.ChangeUpdated || c.Runtime.Health != engine.HealthServing {
				continue
			}
			if i := slices.Index(want, c.Runtime.ID); i >= 0 {
				want = slices.Delete(want, i, i+1)
				continue
			}
			t.Fatalf("%s probed, want %v only", c.Runtime.ID, want)
		}
	}
	clock.advance(8 * time.Second) // 10 s: the first two are probed
	served(ids[0], ids[1])
	if n := vms[2].checks.Load(); n != 0 {
		t.Fatalf("the probe due 2 s later ran %d times with the first two, want 0", n)
	}
	if n := clock.pending(); n != 1 {
		t.Fatalf("%d timers pending for three probes, want 1", n)
	}
	clock.advance(2 * time.Second) // 12 s
	served(ids[2])
	for i, vm := range vms {
		if n := vm.checks.Load(); n != 1 {
			t.Fatalf("vm %d checked %d times, want 1", i, n)
		}
	}
	// One interval later the first two are due together.
	vms[0].set(healthpb.HealthCheckResponse_NOT_SERVING)
	vms[1].set(healthpb.HealthCheckResponse_NOT_SERVING)
	clock.advance(8 * time.Second) // 20 s
	failing := map[string]bool{}
	for len(failing) < 2 {
		if c := next(t, w); c.Kind == engine.ChangeUpdated && c.Runtime.Health == engine.HealthFailing {
			failing[c.Runtime.ID] = true
		}
	}
	if !failing[ids[0]] || !failing[ids[1]] || vms[2].checks.Load() != 1 {
		t.Fatalf("at 20 s failing %v and vm 2 checked %d times; want the first two failing, vm 2 once", failing, vms[2].checks.Load())
	}
}
