// Package engine keeps the registry of the VM plugins a vmre engine runs:
// it launches them (through a [Launcher], by default subprocess.Bootstrap),
// records their state, events and recent output, stops and restarts them,
// registers plugins that attach on their own, and streams every change to
// watchers.
//
// The registry holds live runtimes and a bounded history of ended ones.
// Launched processes are also tracked by a [vmre.Manager], which forgets
// them when they exit. Watchers and output followers never slow the engine
// down: each has a bounded buffer, and one that falls behind is resynced
// (watchers get a fresh snapshot) or told how many lines it missed (output
// followers). Everything in this package is safe for concurrent use.
package engine

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"slices"
	"strconv"
	"sync"
	"time"

	"github.com/rs/zerolog"
	"github.com/vmre/vmre"
)

// Defaults for [Config].
const (
	DefaultHistory     = 64
	DefaultEvents      = 50
	DefaultOutputLines = 1000
	DefaultOutputBytes = 1 << 20
	DefaultWatchBuffer = 256
	DefaultMaxAttached = 256
)

// Config configures an [Engine]. Zero values mean the documented defaults.
type Config struct {
	// Launcher starts plugins. Required for [Engine.Launch]; an engine
	// that only attaches may leave it nil. [NewSubprocessLauncher] is the
	// real one.
	Launcher Launcher
	// Manager tracks launched processes; default vmre.NewManager().
	// [Engine.Close] stops it.
	Manager vmre.Manager
	// Log receives the engine's own events (not plugin output, which the
	// launcher logs). Default: nothing.
	Log zerolog.Logger
	// History is how many ended runtimes stay visible; default 64.
	History int
	// Events is how many events each runtime keeps; default 50.
	Events int
	// OutputLines and OutputBytes bound each runtime's ring of recent
	// output lines; defaults 1000 lines and 1 MiB, whichever is hit first.
	OutputLines int
	OutputBytes int
	// WatchBuffer is how many changes a watcher may fall behind before it
	// is resynced with a fresh snapshot; default 256. It also bounds each
	// output follower's backlog (in lines, times 4).
	WatchBuffer int
	// AcceptedVersions are the protocol versions attached plugins may
	// announce; default {vmre.ProtocolVersion}.
	AcceptedVersions []uint32
	// MaxAttached caps the attached runtimes; default 256.
	MaxAttached int
}

// Engine is the runtime registry. Create it with [New]; release it with
// [Engine.Close].
type Engine struct {
	cfg      Config
	launcher Launcher
	manager  vmre.Manager
	log      zerolog.Logger

	baseCtx    context.Context // ends at Close; parent of every launch
	cancelBase context.CancelFunc
	wg         sync.WaitGroup // exit watchers

	mu       sync.Mutex
	closed   bool
	nextID   int
	runtimes map[string]*runtime
	order    []string // ids in creation order
	history  []string // ids of ended runtimes, oldest first
	watchers map[*Watcher]struct{}
}

// runtime is the engine's record of one runtime. Fields after mu-guarded
// comment are guarded by Engine.mu.
type runtime struct {
	spec Spec
	op   sync.Mutex // serialises Restart calls
	out  *outputRing

	// Guarded by Engine.mu.
	info          Runtime
	events        []Event
	proc          Process
	cancelLaunch  context.CancelFunc
	launchDone    chan struct{} // closed when the current launch has an outcome
	exited        chan struct{} // closed when the current process has ended and been recorded
	launchErr     error         // why the last launch failed
	stopRequested bool
	inHistory     bool
}

// New returns an engine. It validates cfg and fills in defaults without
// changing the caller's value.
func New(cfg Config) (*Engine, error) {
	if cfg.History == 0 {
		cfg.History = DefaultHistory
	}
	if cfg.Events == 0 {
		cfg.Events = DefaultEvents
	}
	if cfg.OutputLines == 0 {
		cfg.OutputLines = DefaultOutputLines
	}
	if cfg.OutputBytes == 0 {
		cfg.OutputBytes = DefaultOutputBytes
	}
	if cfg.WatchBuffer == 0 {
		cfg.WatchBuffer = DefaultWatchBuffer
	}
	if cfg.MaxAttached == 0 {
		cfg.MaxAttached = DefaultMaxAttached
	}
	if len(cfg.AcceptedVersions) == 0 {
		cfg.AcceptedVersions = []uint32{vmre.ProtocolVersion}
	} else {
		cfg.AcceptedVersions = slices.Clone(cfg.AcceptedVersions)
	}
	for name, v := range map[string]int{
		"history": cfg.History, "events": cfg.Events, "output lines": cfg.OutputLines,
		"output bytes": cfg.OutputBytes, "watch buffer": cfg.WatchBuffer, "max attached": cfg.MaxAttached,
	} {
		if v < 0 {
			return nil, fmt.Errorf("%w: %s is %d, want > 0", vmre.ErrInvalidConfig, name, v)
		}
	}
	manager := cfg.Manager
	if manager == nil {
		manager = vmre.NewManager()
	}
	ctx, cancel := context.WithCancel(context.Background())
	return &Engine{
		cfg:        cfg,
		launcher:   cfg.Launcher,
		manager:    manager,
		log:        cfg.Log,
		baseCtx:    ctx,
		cancelBase: cancel,
		runtimes:   make(map[string]*runtime),
		watchers:   make(map[*Watcher]struct{}),
	}, nil
}

// Launch registers a new runtime for spec and launches it. It blocks until
// the handshake has completed or failed and returns the runtime either way;
// on failure the runtime is in state Failed (and in the history) and the
// error says why. The launch is not bound to ctx: ctx only bounds the wait,
// and a caller that gives up leaves the launch to finish in the engine.
func (e *Engine) Launch(ctx context.Context, spec Spec) (Runtime, error) {
	if e.launcher == nil {
		return Runtime{}, fmt.Errorf("%w: no launcher configured", vmre.ErrInvalidConfig)
	}
	if spec.Path == "" {
		return Runtime{}, fmt.Errorf("%w: empty path", vmre.ErrInvalidConfig)
	}
	spec.Args = slices.Clone(spec.Args)
	if spec.Name == "" {
		spec.Name = filepath.Base(spec.Path)
	}
	e.mu.Lock()
	if e.closed {
		e.mu.Unlock()
		return Runtime{}, ErrClosed
	}
	r := e.addLocked(Runtime{
		Name:    spec.Name,
		Command: append([]string{spec.Path}, spec.Args...),
	})
	r.spec = spec
	e.mu.Unlock()
	return e.start(ctx, r, "launching")
}

// addLocked registers a new runtime with the next id.
func (e *Engine) addLocked(info Runtime) *runtime {
	e.nextID++
	info.ID = "r" + strconv.Itoa(e.nextID)
	r := &runtime{info: info, out: newOutputRing(e.cfg.OutputLines, e.cfg.OutputBytes, 4*e.cfg.WatchBuffer)}
	e.runtimes[info.ID] = r
	e.order = append(e.order, info.ID)
	return r
}

// start launches r's spec and records the outcome. The caller holds no
// lock; r has no live process.
func (e *Engine) start(ctx context.Context, r *runtime, why string) (Runtime, error) {
	e.mu.Lock()
	if e.closed {
		e.mu.Unlock()
		return Runtime{}, ErrClosed
	}
	launchCtx, cancel := context.WithCancel(e.baseCtx)
	done := make(chan struct{})
	r.cancelLaunch, r.launchDone, r.exited = cancel, done, make(chan struct{})
	r.stopRequested = false
	r.proc, r.launchErr = nil, nil
	if r.inHistory {
		r.inHistory = false
		e.history = slices.DeleteFunc(e.history, func(id string) bool { return id == r.info.ID })
	}
	r.info.Pid, r.info.VMAddr, r.info.ProtocolVersion = 0, "", 0
	r.info.StartedAt, r.info.HandshakeDuration = time.Now(), 0
	r.info.ExitedAt, r.info.Exit, r.info.LastError = time.Time{}, nil, ""
	r.out.setPid(0) // lines before the new handshake come from an unknown pid
	e.transitionLocked(r, StateStarting, why)
	// Add under the lock: Close sets closed under it before it waits, so
	// no Add can race with that Wait.
	e.wg.Add(1)
	e.mu.Unlock()

	go func() {
		defer e.wg.Done()
		e.launch(launchCtx, cancel, r, done)
	}()
	select {
	case <-done:
	case <-ctx.Done():
		return e.snapshotOf(r), fmt.Errorf("wait for launch of %s: %w", r.info.ID, ctx.Err())
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	info := r.info.clone()
	if info.State == StateFailed || info.State == StateExited {
		if r.stopRequested {
			return info, fmt.Errorf("launch %s: %w", info.ID, ErrStopped)
		}
		return info, fmt.Errorf("launch %s: %w", info.ID, r.launchErr)
	}
	return info, nil
}

// launch runs one launch to its outcome, then, on success, waits for the
// process to exit. It runs on its own goroutine, tracked by e.wg.
func (e *Engine) launch(ctx context.Context, cancel context.CancelFunc, r *runtime, done chan struct{}) {
	defer cancel()
	status, proc, err := e.launcher.Launch(ctx, r.spec, func(l OutputLine) { r.out.add(l) })

	e.mu.Lock()
	if err != nil {
		r.info.ExitedAt = time.Now()
		var exitErr *vmre.ExitError
		if errors.As(err, &exitErr) {
			r.info.Exit = &ExitStatus{Code: exitErr.ExitCode, Signal: exitErr.Signal}
			r.info.Pid = exitErr.Pid
		}
		if r.stopRequested {
			e.transitionLocked(r, StateExited, ErrStopped.Error())
		} else {
			r.info.LastError = err.Error()
			r.launchErr = err
			e.transitionLocked(r, StateFailed, "launch failed: "+err.Error())
		}
		e.log.Warn().Str("id", r.info.ID).Str("vm", r.info.Name).Err(err).Msg("launch failed")
		e.endLocked(r)
		close(done)
		close(r.exited)
		e.mu.Unlock()
		return
	}
	r.proc = proc
	r.info.Pid = status.Pid
	r.info.VMAddr = status.Addr
	r.info.ProtocolVersion = status.ProtocolVersion
	if !status.StartedAt.IsZero() {
		r.info.StartedAt = status.StartedAt
	}
	r.info.HandshakeDuration = status.HandshakeDuration
	r.out.setPid(status.Pid)
	stopNow := r.stopRequested
	if !stopNow {
		e.transitionLocked(r, StateRunning, "handshake completed in "+status.HandshakeDuration.Round(time.Microsecond).String())
	}
	exited := r.exited
	e.mu.Unlock()

	e.log.Info().Str("id", r.info.ID).Str("vm", r.spec.Name).Int("pid", status.Pid).Str("addr", status.Addr).
		Uint32("protocol_version", status.ProtocolVersion).Dur("handshake", status.HandshakeDuration).Msg("runtime running")
	e.manager.TrackRuntime(trackedProcess{proc})
	close(done)
	if stopNow {
		// Stop was asked for while the handshake ran; honour it now.
		proc.Stop(context.WithoutCancel(ctx))
	}

	<-proc.Done()
	exit := proc.ExitStatus()
	e.mu.Lock()
	r.info.ExitedAt = time.Now()
	r.info.Exit = &exit
	switch {
	case r.stopRequested:
		e.transitionLocked(r, StateExited, "stopped: "+exit.String())
	case exit.Success():
		e.transitionLocked(r, StateExited, "exited on its own: "+exit.String())
	default:
		r.info.LastError = "exited on its own: " + exit.String()
		e.transitionLocked(r, StateFailed, r.info.LastError)
	}
	e.endLocked(r)
	close(exited)
	e.mu.Unlock()
	e.log.Info().Str("id", r.info.ID).Str("vm", r.spec.Name).Int("pid", status.Pid).Str("exit", exit.String()).Msg("runtime ended")
}

// trackedProcess adapts a Process to vmre.Runtime for the Manager.
type trackedProcess struct{ Process }

var _ vmre.Runtime = trackedProcess{}

// transitionLocked moves r to state, records the event and tells watchers.
func (e *Engine) transitionLocked(r *runtime, state State, message string) {
	r.info.State = state
	ev := Event{Time: time.Now(), State: state, Message: message}
	r.events = append(r.events, ev)
	if over := len(r.events) - e.cfg.Events; over > 0 {
		r.events = slices.Delete(r.events, 0, over)
	}
	e.publishLocked(Change{Kind: ChangeUpdated, Runtime: r.info.clone(), Event: ev, Time: ev.Time})
}

// endLocked moves an ended runtime into the history, evicting the oldest
// ended runtimes beyond the bound.
func (e *Engine) endLocked(r *runtime) {
	if r.inHistory {
		return
	}
	r.inHistory = true
	e.history = append(e.history, r.info.ID)
	for len(e.history) > e.cfg.History {
		id := e.history[0]
		e.history = e.history[1:]
		old := e.runtimes[id]
		delete(e.runtimes, id)
		e.order = slices.DeleteFunc(e.order, func(o string) bool { return o == id })
		old.out.close()
		e.publishLocked(Change{Kind: ChangeRemoved, RemovedID: id, Time: time.Now()})
	}
}

// Stop stops the runtime with the given id and returns it once its process
// has exited, or when ctx is done (the stop then completes in the
// background). Stopping an ended runtime returns it unchanged. A runtime
// that is still starting has its launch aborted. Attached runtimes cannot be
// stopped: [ErrAttached].
func (e *Engine) Stop(ctx context.Context, id string) (Runtime, error) {
	e.mu.Lock()
	r, ok := e.runtimes[id]
	if !ok {
		e.mu.Unlock()
		return Runtime{}, fmt.Errorf("stop %q: %w", id, ErrUnknownRuntime)
	}
	e.mu.Unlock()
	return e.stop(ctx, r)
}

func (e *Engine) stop(ctx context.Context, r *runtime) (Runtime, error) {
	e.mu.Lock()
	if r.info.Attached {
		info := r.info.clone()
		e.mu.Unlock()
		return info, fmt.Errorf("stop %s: %w", info.ID, ErrAttached)
	}
	exited := r.exited
	var proc Process
	switch r.info.State {
	case StateStarting, StateRunning:
		r.stopRequested = true
		e.transitionLocked(r, StateStopping, "stop requested")
		if r.proc == nil {
			// Still in its handshake: abort the launch, which kills the
			// process.
			r.cancelLaunch()
		}
		proc = r.proc
	case StateStopping:
		proc = r.proc
	default:
		info := r.info.clone()
		e.mu.Unlock()
		return info, nil
	}
	e.mu.Unlock()

	e.log.Info().Str("id", r.info.ID).Msg("stopping runtime")
	if proc != nil {
		proc.Stop(ctx)
	}
	select {
	case <-exited:
	case <-ctx.Done():
		return e.snapshotOf(r), fmt.Errorf("stop %s: %w", r.info.ID, ctx.Err())
	}
	return e.snapshotOf(r), nil
}

// Restart stops the runtime if it runs, then launches its command again
// under the same id, and returns it once the new process has handshaken or
// failed to. Ended runtimes in the history can be restarted too. Attached
// runtimes cannot: [ErrAttached].
func (e *Engine) Restart(ctx context.Context, id string) (Runtime, error) {
	e.mu.Lock()
	r, ok := e.runtimes[id]
	e.mu.Unlock()
	if !ok {
		return Runtime{}, fmt.Errorf("restart %q: %w", id, ErrUnknownRuntime)
	}
	r.op.Lock()
	defer r.op.Unlock()
	if _, err := e.stop(ctx, r); err != nil {
		return e.snapshotOf(r), fmt.Errorf("restart: %w", err)
	}
	e.mu.Lock()
	if _, still := e.runtimes[id]; !still {
		e.mu.Unlock()
		return Runtime{}, fmt.Errorf("restart %q: %w", id, ErrUnknownRuntime)
	}
	r.info.Restarts++
	e.mu.Unlock()
	return e.start(ctx, r, "restarting")
}

// List returns every runtime, live and in the history, in creation order.
func (e *Engine) List() []Runtime {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.snapshotLocked()
}

func (e *Engine) snapshotLocked() []Runtime {
	out := make([]Runtime, 0, len(e.order))
	for _, id := range e.order {
		out = append(out, e.runtimes[id].info.clone())
	}
	return out
}

// Get returns one runtime and its events, oldest first.
func (e *Engine) Get(id string) (Runtime, []Event, error) {
	e.mu.Lock()
	defer e.mu.Unlock()
	r, ok := e.runtimes[id]
	if !ok {
		return Runtime{}, nil, fmt.Errorf("get %q: %w", id, ErrUnknownRuntime)
	}
	return r.info.clone(), slices.Clone(r.events), nil
}

func (e *Engine) snapshotOf(r *runtime) Runtime {
	e.mu.Lock()
	defer e.mu.Unlock()
	return r.info.clone()
}

// LiveCount reports how many runtimes have a process that has not ended
// (attached ones included).
func (e *Engine) LiveCount() int {
	e.mu.Lock()
	defer e.mu.Unlock()
	return len(e.runtimes) - len(e.history)
}

// Close stops every launched runtime (through the Manager), aborts launches
// in progress, ends every watch and output stream, and blocks until the
// processes have exited or ctx is done. Attached runtimes are left alone.
// Close is idempotent; later calls to Launch, Restart and Attach fail with
// [ErrClosed].
func (e *Engine) Close(ctx context.Context) {
	e.mu.Lock()
	first := !e.closed
	e.closed = true
	for _, r := range e.runtimes {
		if r.info.State == StateStarting || r.info.State == StateRunning {
			r.stopRequested = true
			e.transitionLocked(r, StateStopping, "engine shutting down")
		}
	}
	e.mu.Unlock()
	if first {
		e.log.Info().Msg("engine closing")
	}
	e.cancelBase()
	e.manager.Stop(ctx)

	done := make(chan struct{})
	go func() { e.wg.Wait(); close(done) }()
	select {
	case <-done:
	case <-ctx.Done():
	}

	e.mu.Lock()
	for w := range e.watchers {
		w.closeLocked()
	}
	rs := make([]*runtime, 0, len(e.runtimes))
	for _, r := range e.runtimes {
		rs = append(rs, r)
	}
	e.mu.Unlock()
	for _, r := range rs {
		r.out.close()
	}
}
