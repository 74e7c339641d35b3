package engine_test

import (
	"context"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/rs/zerolog"
	"github.com/vmre/vmre"
	"github.com/vmre/vmre/engine"
	"github.com/vmre/vmre/subprocess"
)

// fakeLauncher launches fake processes. Each launch takes the next step from
// its script (repeating the last one): hold blocks the handshake until the
// channel closes or ctx ends, err fails the launch, ignoreStops makes the
// process ignore its first Stop calls.
type fakeLauncher struct {
	nextPid atomic.Int64
	mu      sync.Mutex
	steps   []fakeStep
	procs   []*fakeProc
	outputs []func(*subprocess.Line)
	calls   int
	// overlaps counts launches that began while an earlier process still
	// ran: for an engine with one runtime, a double launch.
	overlaps atomic.Int32
}

type fakeStep struct {
	hold        chan struct{}
	err         error
	lines       []string // written before the handshake
	ignoreStops int32    // Stop calls the process ignores, as a plugin ignores SIGTERM
	addr        string   // the VM address announced; default one made up from the pid
}

func (f *fakeLauncher) Launch(ctx context.Context, _ engine.Spec, output func(*subprocess.Line)) (subprocess.Status, vmre.Runtime, error) {
	f.mu.Lock()
	step := fakeStep{}
	if len(f.steps) > 0 {
		i := min(f.calls, len(f.steps)-1)
		step = f.steps[i]
	}
	launch := f.calls
	f.calls++
	f.outputs = append(f.outputs, output)
	for _, p := range f.procs {
		select {
		case <-p.done:
		default:
			f.overlaps.Add(1)
		}
	}
	f.mu.Unlock()
	for _, l := range step.lines {
		output(&subprocess.Line{Time: time.Now(), Stream: "stdout", Text: []byte(l)})
	}
	if step.hold != nil {
		select {
		case <-step.hold:
		case <-ctx.Done():
			return subprocess.Status{}, nil, ctx.Err()
		}
	}
	if step.err != nil {
		return subprocess.Status{}, nil, step.err
	}
	pid := int(1000 + f.nextPid.Add(1))
	p := &fakeProc{done: make(chan struct{}), pid: pid, launch: launch, ignoreStops: step.ignoreStops}
	f.mu.Lock()
	f.procs = append(f.procs, p)
	f.mu.Unlock()
	addr := step.addr
	if addr == "" {
		addr = "127.0.0.1:" + strconv.Itoa(20000+pid)
	}
	return subprocess.Status{
		Pid:               pid,
		Addr:              addr,
		ProtocolVersion:   42,
		StartedAt:         time.Now().Add(-time.Millisecond),
		HandshakeDuration: time.Millisecond,
	}, p, nil
}

func (f *fakeLauncher) proc(i int) *fakeProc {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.procs[i]
}

// procByPid returns the process launched with pid, or nil.
func (f *fakeLauncher) procByPid(pid int) *fakeProc {
	f.mu.Lock()
	defer f.mu.Unlock()
	for _, p := range f.procs {
		if p.pid == pid {
			return p
		}
	}
	return nil
}

func (f *fakeLauncher) output(i int) func(*subprocess.Line) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.outputs[i]
}

// launches reports how many launches have begun.
func (f *fakeLauncher) launches() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.calls
}

// fakeProc exits when stopped (SIGTERM-style), unless it still ignores
// stops, or when end is called.
type fakeProc struct {
	pid         int
	launch      int // the launch that started it: 0 for the first, then 1, 2, ...
	ignoreStops int32
	once        sync.Once
	done        chan struct{}
	mu          sync.Mutex
	exit        vmre.ExitStatus
	stops       atomic.Int32
}

func (p *fakeProc) end(s vmre.ExitStatus) {
	p.once.Do(func() {
		p.mu.Lock()
		p.exit = s
		p.mu.Unlock()
		close(p.done)
	})
}

func (p *fakeProc) Stop(ctx context.Context) {
	if p.stops.Add(1) > p.ignoreStops {
		p.end(vmre.ExitStatus{Code: -1, Signal: "terminated"})
	}
	select {
	case <-p.done:
	case <-ctx.Done():
	}
}

func (p *fakeProc) Done() <-chan struct{} { return p.done }

func (p *fakeProc) ExitStatus() vmre.ExitStatus {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.exit
}

func newEngine(t *testing.T, l engine.Launcher, mod func(*engine.Config)) *engine.Engine {
	t.Helper()
	cfg := engine.Config{Launcher: l, Log: zerolog.New(zerolog.NewTestWriter(t))}
	if mod != nil {
		mod(&cfg)
	}
	e, err := engine.New(cfg)
	if err != nil {
		t.Fatalf("engine.New: %v", err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		e.Close(ctx)
	})
	return e
}

// next reads the watcher's next message, waiting up to eventWait.
func next(t *testing.T, w *engine.Watcher) engine.Change {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), eventWait)
	defer cancel()
	c, err := w.Next(ctx)
	if err != nil {
		t.Fatalf("watcher.Next: %v", err)
	}
	return c
}

// running returns the indexes (in f.procs) of the processes that have not
// ended.
func (f *fakeLauncher) running() []int {
	f.mu.Lock()
	defer f.mu.Unlock()
	var out []int
	for i, p := range f.procs {
		select {
		case <-p.Done():
		default:
			out = append(out, i)
		}
	}
	return out
}
