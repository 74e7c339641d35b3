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
//
// Configuration: an [Engine] is long-lived, so it takes one documented
// [Config] struct whose zero fields mean the documented defaults, as
// os/exec and go-plugin configure their long-lived objects.
package engine

import (
	"context"
	"crypto/tls"
	"fmt"
	"slices"
	"sync"
	"time"

	"github.com/rs/zerolog"
	"github.com/vmre/vmre"
	"github.com/vmre/vmre/internal/preflight"
	"github.com/vmre/vmre/internal/token"
	"github.com/vmre/vmre/server"
)

// Defaults for [Config].
const (
	DefaultHistory     = 64
	DefaultEvents      = 50
	DefaultOutputLines = 1000
	DefaultOutputBytes = 1 << 20
	DefaultWatchBuffer = 256
	DefaultMaxAttached = 256
	// DefaultSampleInterval is how often the resources of each runtime
	// are sampled: often enough for a sparkline of the last minutes, and
	// sampling 100 runtimes every 5 s costs about 0.1% of a core
	// (docs/supervision.md).
	DefaultSampleInterval = 5 * time.Second
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
	// output follower's backlog (in lines, times 4); OutputBytes bounds
	// that backlog in bytes too.
	WatchBuffer int
	// AcceptedVersions are the protocol versions attached plugins may
	// announce; default {vmre.ProtocolVersion}.
	AcceptedVersions []uint32
	// MaxAttached caps the attached runtimes; default 256. The engine
	// cannot see an attached plugin exit, so when the cap is reached a new
	// handshake makes it forget the attached runtime whose last handshake
	// is the oldest.
	MaxAttached int
	// AttachHealth is the liveness probe of attached runtimes: the only
	// way the engine sees an attached plugin die (it becomes [StateLost]
	// and is removed). Zero: no probing, and attached runtimes stay until
	// MaxAttached evicts them.
	AttachHealth HealthCheck
	// VMTLS is the client side of TLS toward VMs that announced a
	// [vmre.TLSAddrPrefix] address ("tls://host:port"): the roots that
	// verify their certificates and the client certificate the engine
	// presents, for the liveness probes. Nil: the system's roots, no
	// client certificate. Cleartext addresses are probed over h2c.
	VMTLS *tls.Config
	// SampleInterval is how often the resources of every runtime's
	// process tree are sampled (and sent to watchers); default
	// DefaultSampleInterval, negative: never.
	SampleInterval time.Duration
	// Clock drives backoff timers, probes and sampling; default the wall
	// clock. Tests inject a fake one.
	Clock Clock
	// Refusals counts the handshake callers the attach endpoint refuses;
	// default a new one. Give the launcher's subprocess.Config the same
	// one to count every refusal in one place ([Engine.Refusals]).
	Refusals *server.Refusals
	// NonDumpable makes [New] mark the whole process non-dumpable
	// (Linux, prctl PR_SET_DUMPABLE 0): processes of the same user,
	// plugins included, can then neither ptrace the engine nor read its
	// /proc/PID/mem, environ or fd (the API token in memory, secrets in
	// its environment, plugins' pipes and the handshake listeners), and no
	// core dump is written. The engine still reads its own /proc/self and
	// launches through /proc/self/fd/N. It is process-wide, and not undone
	// by [Engine.Close]. Default false: an embedding program decides. Root
	// (CAP_SYS_PTRACE) is not stopped; elsewhere than Linux it does nothing.
	NonDumpable bool
}

// Engine is the runtime registry. Create it with [New]; release it with
// [Engine.Close].
type Engine struct {
	cfg      Config
	launcher Launcher
	manager  vmre.Manager
	log      zerolog.Logger
	// instanceID is random per engine; see [Engine.InstanceID].
	instanceID string
	started    time.Time // when New made the engine

	baseCtx    context.Context // ends at Close; parent of every launch
	cancelBase context.CancelFunc
	wg         sync.WaitGroup // launches, exit watchers and restarts

	// scanner is used by one sampling at a time, outside mu: the next is
	// scheduled when the last has finished. Close closes it unless a
	// sampling is under way (sampling, guarded by mu), which then does.
	scanner  procScanner
	sampling bool

	mu         sync.Mutex
	closed     bool
	nextID     int
	runtimes   map[string]*runtime
	order      []string // ids in creation order
	history    []string // ids of ended runtimes, oldest first
	watchers   map[*Watcher]struct{}
	sched      schedule // the probes and the sampling (schedule.go)
	sampler    job      // the next resource sampling
	changeSeq  uint64   // Seq of the last change published
	handshakes uint64   // attach handshakes so far; orders attached runtimes by their last
}

// runtime is the engine's record of one runtime. Fields after mu-guarded
// comment are guarded by Engine.mu.
type runtime struct {
	spec Spec
	out  *outputRing

	// Guarded by Engine.mu.
	info          Runtime
	events        []Event
	proc          vmre.Runtime
	cancelLaunch  context.CancelFunc
	launchDone    chan struct{} // closed when the current launch has an outcome
	exited        chan struct{} // closed when the current process has ended and been recorded
	launchErr     error         // why the last launch failed
	stopRequested bool
	stops         uint64     // Stop calls so far; a restart accepted before the last one relaunches nothing
	queued        *restartOp // the restart waiting for its turn, which later Restarts join
	restarting    bool       // a runRestarts goroutine runs for r
	inHistory     bool
	lastHandshake uint64 // attached: e.handshakes at its last handshake
	instance      string // attached: the Instance of its last incarnation's handshake

	// The restart policy's record (backoff.go).
	runningSince time.Time   // engine clock at the last handshake; zero once ended
	streak       int         // failures since the runtime last ran a whole window
	failTimes    []time.Time // the last MaxRestarts+1 failures, oldest first
	backoff      Timer       // the pending relaunch, in StateBackoff
	backoffGen   uint64      // bumped to void a relaunch already under way
	// livenessStop: the liveness probe stopped the process, so its exit is
	// a failure.
	livenessStop bool
	probe        *prober     // the liveness probe, while one runs (probe.go)
	stopAt       time.Time   // when the current launch began stopping; zero if it has not
	usage        usageRecord // the last sample's (usage.go)
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
	if cfg.SampleInterval == 0 {
		cfg.SampleInterval = DefaultSampleInterval
	}
	if cfg.Clock == nil {
		cfg.Clock = realClock{}
	}
	if cfg.Refusals == nil {
		cfg.Refusals = new(server.Refusals)
	}
	var err error
	if cfg.AttachHealth, err = cfg.AttachHealth.withDefaults(); err != nil {
		return nil, fmt.Errorf("attach health: %w", err)
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
	if cfg.NonDumpable {
		if err := setNonDumpable(); err != nil {
			return nil, err
		}
	}
	manager := cfg.Manager
	if manager == nil {
		manager = vmre.NewManager()
	}
	ctx, cancel := context.WithCancel(context.Background())
	e := &Engine{
		cfg:        cfg,
		launcher:   cfg.Launcher,
		manager:    manager,
		log:        cfg.Log,
		instanceID: token.New(),
		started:    time.Now(),
		baseCtx:    ctx,
		cancelBase: cancel,
		runtimes:   make(map[string]*runtime),
		watchers:   make(map[*Watcher]struct{}),
	}
	e.sched = schedule{mu: &e.mu, clock: cfg.Clock}
	e.sampler = job{run: e.sample, index: -1}
	e.mu.Lock()
	e.scheduleSampleLocked()
	e.mu.Unlock()
	return e, nil
}

// InstanceID returns the random id this engine chose in [New]. Any other
// engine, such as the next run of the same vmre command, has another one, so
// a client that reconnects can tell whether runtime ids and the numbering of
// output lines ([Line].Seq) still mean what they meant: from one engine to
// another they start over. The id is not a secret.
func (e *Engine) InstanceID() string { return e.instanceID }

// Refusals returns the counter of refused handshake callers:
// [Config.Refusals] or the engine's own.
func (e *Engine) Refusals() *server.Refusals { return e.cfg.Refusals }

// StartedAt returns when [New] made the engine: its uptime begins there.
func (e *Engine) StartedAt() time.Time { return e.started }

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
// It then removes the process's directory of exec links (in
// XDG_RUNTIME_DIR or /dev/shm), which a later launch of any engine in the
// process makes again. Close is idempotent; later calls to Launch, Restart
// and Attach fail with [ErrClosed].
func (e *Engine) Close(ctx context.Context) {
	e.mu.Lock()
	first := !e.closed
	e.closed = true
	e.sched.stopLocked()
	if !e.sampling {
		e.scanner.close()
	}
	for _, r := range e.runtimes {
		// The probe's connection goes before the stop signal: a VM's
		// graceful stop would wait for that client to leave.
		e.stopProbeLocked(r)
		switch r.info.State {
		case StateStarting, StateRunning, StateUnhealthy:
			if !r.info.Attached {
				r.stopRequested = true
				e.transitionLocked(r, StateStopping, "engine shutting down")
			}
		case StateBackoff:
			e.cancelBackoffLocked(r)
			e.finishLocked(r, StateExited, "engine shutting down: relaunch cancelled")
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
	preflight.RemoveLinkDir()
}
