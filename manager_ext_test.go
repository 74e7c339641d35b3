package vmre_test

import (
	"context"
	"runtime"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/vmre/vmre"
	"go.uber.org/goleak"
)

// fakeRuntime is a vmre.Runtime whose "process" exits when Stop is called or
// when the test calls exit.
type fakeRuntime struct {
	stops    atomic.Int32
	done     chan struct{}
	exitOnce sync.Once
	// block, if set, makes Stop wait for it before exiting.
	block chan struct{}
}

func newFakeRuntime() *fakeRuntime { return &fakeRuntime{done: make(chan struct{})} }

func (r *fakeRuntime) exit() { r.exitOnce.Do(func() { close(r.done) }) }

func (r *fakeRuntime) Stop(ctx context.Context) {
	r.stops.Add(1)
	if r.block != nil {
		select {
		case <-r.block:
		case <-ctx.Done():
			return
		}
	}
	r.exit()
}

func (r *fakeRuntime) Done() <-chan struct{} { return r.done }

func (r *fakeRuntime) ExitStatus() vmre.ExitStatus { return vmre.ExitStatus{} }

// plainStopper implements only vmre.Stopper.
type plainStopper struct{ stops atomic.Int32 }

func (s *plainStopper) Stop(context.Context) { s.stops.Add(1) }

func TestManagerStopsAllConcurrently(t *testing.T) {
	defer goleak.VerifyNone(t)
	m := vmre.NewManager()
	// Each Stop blocks until every Stop has begun: a sequential Stop would
	// deadlock and the test context would end it.
	const n = 20
	var started sync.WaitGroup
	started.Add(n)
	release := make(chan struct{})
	go func() { started.Wait(); close(release) }()
	runtimes := make([]*fakeRuntime, n)
	for i := range runtimes {
		r := newFakeRuntime()
		r.block = make(chan struct{})
		go func() {
			<-release
			close(r.block)
		}()
		runtimes[i] = r
		m.TrackRuntime(&countingStart{fakeRuntime: r, started: &started})
	}
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()
	m.Stop(ctx)
	if ctx.Err() != nil {
		t.Fatal("Stop did not stop the runtimes concurrently")
	}
	for i, r := range runtimes {
		if got := r.stops.Load(); got != 1 {
			t.Errorf("runtime %d stopped %d times, want 1", i, got)
		}
	}
	if got := m.Len(); got != 0 {
		t.Errorf("Len after Stop = %d, want 0", got)
	}
}

type countingStart struct {
	*fakeRuntime
	started *sync.WaitGroup
	once    sync.Once
}

func (c *countingStart) Stop(ctx context.Context) {
	c.once.Do(c.started.Done)
	c.fakeRuntime.Stop(ctx)
}

func TestManagerForgetsExitedRuntimes(t *testing.T) {
	defer goleak.VerifyNone(t)
	m := vmre.NewManager()
	exited, alive := newFakeRuntime(), newFakeRuntime()
	plain := &plainStopper{}
	m.TrackRuntime(exited)
	m.TrackRuntime(alive)
	m.TrackRuntime(plain)
	if got := m.Len(); got != 3 {
		t.Fatalf("Len = %d, want 3", got)
	}
	exited.exit()
	if got := m.Len(); got != 2 {
		t.Fatalf("Len after an exit = %d, want 2", got)
	}

	m.Stop(t.Context())
	if got := exited.stops.Load(); got != 0 {
		t.Errorf("exited runtime was stopped %d times, want 0", got)
	}
	if got := alive.stops.Load(); got != 1 {
		t.Errorf("live runtime was stopped %d times, want 1", got)
	}
	if got := plain.stops.Load(); got != 1 {
		t.Errorf("plain stopper was stopped %d times, want 1", got)
	}
}

// A plain Stopper cannot report that its process exited, but a Stop that
// returned before its context ended has reaped it (the Stopper contract):
// after the manager's Stop it is no longer counted. One whose Stop was cut
// short may still be running, and is.
func TestManagerForgetsStoppedPlainStoppers(t *testing.T) {
	defer goleak.VerifyNone(t)
	m := vmre.NewManager()
	plain := &plainStopper{}
	m.TrackRuntime(plain)
	m.TrackRuntime(newFakeRuntime())
	m.Stop(t.Context())
	if got := plain.stops.Load(); got != 1 {
		t.Errorf("plain stopper was stopped %d times, want 1", got)
	}
	if got := m.Len(); got != 0 {
		t.Errorf("Len after Stop = %d, want 0", got)
	}

	m = vmre.NewManager()
	stuck := &stuckStopper{}
	m.TrackRuntime(stuck)
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	m.Stop(ctx)
	if got := m.Len(); got != 1 {
		t.Errorf("Len after a Stop cut short = %d, want 1", got)
	}
}

// stuckStopper implements only vmre.Stopper, and its Stop returns only
// when its context ends.
type stuckStopper struct{}

func (stuckStopper) Stop(ctx context.Context) { <-ctx.Done() }

func TestManagerStopsLateArrivals(t *testing.T) {
	defer goleak.VerifyNone(t)
	m := vmre.NewManager()
	m.Stop(t.Context())
	late := newFakeRuntime()
	m.TrackRuntime(late)
	if got := late.stops.Load(); got != 1 {
		t.Fatalf("runtime tracked after Stop was stopped %d times, want 1", got)
	}
	if got := m.Len(); got != 0 {
		t.Fatalf("Len = %d, want 0", got)
	}
}

func TestManagerStopHonoursContext(t *testing.T) {
	m := vmre.NewManager()
	stuck := newFakeRuntime()
	stuck.block = make(chan struct{}) // never released
	m.TrackRuntime(stuck)
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	m.Stop(ctx) // must return although the runtime never exits
	if got := m.Len(); got != 1 {
		t.Fatalf("Len after a Stop cut short = %d, want 1", got)
	}
	stuck.exit()
	if got := m.Len(); got != 0 {
		t.Fatalf("Len after the exit = %d, want 0", got)
	}
}

// Tracking costs no goroutine per runtime: a node keeps hundreds alive,
// and each goroutine's stack stays resident for the runtime's life.
func TestManagerTracksWithoutGoroutines(t *testing.T) {
	defer goleak.VerifyNone(t)
	m := vmre.NewManager()
	const n = 200
	runtimes := make([]*fakeRuntime, n)
	before := runtime.NumGoroutine()
	for i := range runtimes {
		runtimes[i] = newFakeRuntime()
		m.TrackRuntime(runtimes[i])
	}
	if grown := runtime.NumGoroutine() - before; grown >= n/2 {
		t.Errorf("tracking %d runtimes started %d goroutines", n, grown)
	}
	// Exits are seen however many were tracked since the last look.
	for _, r := range runtimes[:n/2] {
		r.exit()
	}
	if got := m.Len(); got != n/2 {
		t.Errorf("Len = %d, want %d", got, n/2)
	}
	m.Stop(t.Context())
	for i, r := range runtimes {
		if want := int32(min(i/(n/2), 1)); r.stops.Load() != want {
			t.Fatalf("runtime %d was stopped %d times, want %d", i, r.stops.Load(), want)
		}
	}
}
