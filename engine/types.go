package engine

import (
	"context"
	"errors"
	"slices"
	"time"

	"github.com/vmre/vmre"
	"github.com/vmre/vmre/subprocess"
)

// Errors returned by the engine. They are classified with [errors.Is]; the
// api package maps them to status codes.
var (
	// ErrUnknownRuntime: no runtime with that id is live or in the history.
	ErrUnknownRuntime = errors.New("unknown runtime")
	// ErrAttached: the runtime was attached, its process is not the
	// engine's to stop or restart.
	ErrAttached = errors.New("runtime is attached: its process is not ours to stop or restart")
	// ErrClosed: the engine is shutting down.
	ErrClosed = errors.New("engine closed")
	// ErrStopped: a launch or restart was cut short by a stop.
	ErrStopped = errors.New("stopped before the handshake completed")
)

// errCancelledByStop is the error of a restart that a Stop cancelled before
// it launched anything. It is an [ErrStopped] whose text does not speak of
// a handshake that never began.
var errCancelledByStop error = cancelledByStop{}

type cancelledByStop struct{}

func (cancelledByStop) Error() string { return "cancelled by a stop" }
func (cancelledByStop) Unwrap() error { return ErrStopped }

// State is where a runtime is in its life.
type State int

// States of a runtime. Launched runtimes go Starting -> Running ->
// Stopping -> Exited, or end in Failed when the launch or handshake fails or
// the process exits on its own with a non-zero status or a signal. A
// running runtime whose liveness probe fails (see [HealthCheck]) is
// Unhealthy until a probe succeeds or it is stopped. Under a
// [RestartPolicy] an ended runtime waits in Backoff, then goes back to
// Starting; one that failed too often stays Failed. A restart takes an
// ended runtime back to Starting under the same id. Attached runtimes stay
// Attached (or Unhealthy) while their probe answers, and become Lost when
// it has failed FailureThreshold times in a row: the engine does not own
// their process and sees its death only through the probe.
const (
	StateStarting State = iota + 1
	StateRunning
	StateStopping
	StateExited
	StateFailed
	StateAttached
	StateBackoff
	StateUnhealthy
	StateLost
	stateEnd // one past the last state; States ranges up to it
)

// States returns every state, in the order of their values, so that a
// reader that reports one line per state (a metric, say) covers a state
// added later.
func States() []State {
	out := make([]State, 0, stateEnd-StateStarting)
	for s := StateStarting; s < stateEnd; s++ {
		out = append(out, s)
	}
	return out
}

// String returns the lowercase state name ("running").
func (s State) String() string {
	switch s {
	case StateStarting:
		return "starting"
	case StateRunning:
		return "running"
	case StateStopping:
		return "stopping"
	case StateExited:
		return "exited"
	case StateFailed:
		return "failed"
	case StateAttached:
		return "attached"
	case StateBackoff:
		return "backoff"
	case StateUnhealthy:
		return "unhealthy"
	case StateLost:
		return "lost"
	default:
		return "unknown"
	}
}

// Ended reports whether the state is final for the current process. A
// runtime in Backoff has no process; one in Lost is about to be removed.
func (s State) Ended() bool {
	return s == StateExited || s == StateFailed || s == StateBackoff || s == StateLost
}

// Runtime is a snapshot of one runtime. It is a value: the engine never
// changes a Runtime it has handed out.
type Runtime struct {
	ID      string
	Name    string
	Command []string // path and arguments; nil for attached runtimes
	State   State
	// Attached is true when the plugin was started by someone else and
	// handshook with the attach endpoint.
	Attached          bool
	Pid               int // 0 when unknown
	VMAddr            string
	ProtocolVersion   uint32
	StartedAt         time.Time
	HandshakeDuration time.Duration
	ExitedAt          time.Time        // zero while the process runs
	Exit              *vmre.ExitStatus // nil while the process runs
	LastError         string
	Restarts          int
	PeerAddr          string // attached runtimes: where the handshake came from
	// NextAttempt is when the engine relaunches a runtime in
	// [StateBackoff]; zero in every other state.
	NextAttempt time.Time
	// Failures counts the failures within the restart policy's window
	// that the next backoff is based on.
	Failures int
	// Health is what the last liveness probe found.
	Health Health
	// Usage is the last resource sample of the runtime's process tree;
	// nil before the first sample and once the process has ended.
	Usage *Usage
	// End says why the current launch ended; EndNone while it has not.
	End End
	// LaunchErr is why the current launch failed (End is
	// EndLaunchFailed), classified with errors.Is against vmre's
	// sentinels; nil otherwise.
	LaunchErr error
	// StopDuration is how long the stop that ended the current launch
	// took, from the request (or the liveness failure) to the process's
	// exit; zero when no stop ended it.
	StopDuration time.Duration
	// ProbeFailures counts the liveness probes of the runtime that
	// failed, over its whole life.
	ProbeFailures int
}

// End is why a runtime's launch ended.
type End int

// Ends of a launch.
const (
	// EndNone: the launch has not ended.
	EndNone End = iota
	// EndStopped: a stop ended it ([Engine.Stop], a restart, Close).
	EndStopped
	// EndExited: the process exited on its own with status 0.
	EndExited
	// EndFailed: the process exited on its own with a non-zero status
	// or by a signal (Runtime.Exit says which).
	EndFailed
	// EndLaunchFailed: the launch or its handshake failed
	// (Runtime.LaunchErr says why).
	EndLaunchFailed
	// EndLiveness: its liveness probe kept failing, so the engine
	// stopped it.
	EndLiveness
	// EndLost: an attached runtime whose liveness probe kept failing.
	EndLost
)

// String returns the lowercase name of the end ("launch_failed").
func (e End) String() string {
	switch e {
	case EndStopped:
		return "stopped"
	case EndExited:
		return "exited"
	case EndFailed:
		return "failed"
	case EndLaunchFailed:
		return "launch_failed"
	case EndLiveness:
		return "liveness"
	case EndLost:
		return "lost"
	default:
		return "none"
	}
}

func (r Runtime) clone() Runtime {
	r.Command = slices.Clone(r.Command)
	if r.Exit != nil {
		exit := *r.Exit
		r.Exit = &exit
	}
	if r.Usage != nil {
		u := *r.Usage
		r.Usage = &u
	}
	return r
}

// Health is the outcome of a runtime's liveness probing.
type Health int

// Health values.
const (
	// HealthUnknown: not probed (no [HealthCheck], or no answer yet).
	HealthUnknown Health = iota
	// HealthServing: the last probe answered SERVING.
	HealthServing
	// HealthFailing: the last probe failed (error, timeout, or a status
	// other than SERVING).
	HealthFailing
	// HealthUnimplemented: the VM serves no grpc.health.v1 service, so it
	// is not probed.
	HealthUnimplemented
)

// String returns "unknown", "serving", "failing" or "unimplemented".
func (h Health) String() string {
	switch h {
	case HealthServing:
		return "serving"
	case HealthFailing:
		return "failing"
	case HealthUnimplemented:
		return "unimplemented"
	default:
		return "unknown"
	}
}

// Usage is a sample of what a runtime's process tree (the plugin and its
// descendants, or its cgroup) uses.
type Usage struct {
	// Time is when the sample was taken.
	Time time.Time
	// CPUSeconds is the user and system CPU time of the tree, including
	// children it has reaped. Without a cgroup, the time of descendants
	// that were reparented away from the tree is lost, so it may dip.
	CPUSeconds float64
	// CPUPercent is the CPU used since the previous sample, in percent of
	// one core (200 is two cores busy).
	CPUPercent float64
	// RSSBytes is the resident memory of the tree (the sum of each
	// process's RSS; with a cgroup, its memory.current when available).
	RSSBytes int64
	Threads  int
	OpenFDs  int
	// Processes is how many processes the tree holds.
	Processes int
}

// Event is one entry of a runtime's history.
type Event struct {
	Time    time.Time
	State   State // the state the runtime entered
	Message string
}

// ChangeKind tells what a [Change] carries.
type ChangeKind int

// Kinds of [Change].
const (
	// ChangeSnapshot carries every runtime; the watcher replaces what it
	// knew.
	ChangeSnapshot ChangeKind = iota + 1
	// ChangeUpdated carries one added or changed runtime and the event
	// that changed it.
	ChangeUpdated
	// ChangeRemoved carries the id of a runtime that left the history.
	ChangeRemoved
	// ChangeUsage carries one runtime whose only change is a new resource
	// sample ([Runtime.Usage]); it has no Event. Each runtime has at most
	// one per [Config.SampleInterval].
	ChangeUsage
)

// Change is one message of a watch.
type Change struct {
	Kind      ChangeKind
	Snapshot  []Runtime // ChangeSnapshot
	Runtime   Runtime   // ChangeUpdated, ChangeUsage
	Event     Event     // ChangeUpdated
	RemovedID string    // ChangeRemoved
	Time      time.Time // engine clock when the change was made
	// Seq numbers the engine's changes from 1 up: every watcher receives a
	// change with the same Seq, so a server can encode it once for all of
	// them. A snapshot is each watcher's own and has Seq 0.
	Seq uint64
}

// Spec is what to launch, and how to supervise it.
type Spec struct {
	// Name shown for the runtime; default: the base name of Path.
	Name string
	Path string
	Args []string
	// Launch, if set, holds this runtime's launch settings (protocol
	// versions, timeouts, VMShutdown, handshake auth, SHA256, environment)
	// for [NewSubprocessLauncher], replacing the launcher's own. The
	// launcher keeps its own Log, OnOutput, CgroupRoot, Refusals and VMTLS,
	// and sets Name and Limits from this Spec. Nil: the launcher's
	// settings.
	Launch *subprocess.Config
	// Restart says whether the engine relaunches the runtime when it ends
	// on its own; the zero value never does.
	Restart RestartPolicy
	// Health configures the liveness probe; the zero value probes nothing.
	Health HealthCheck
	// Limits caps the plugin's resources; the zero value caps nothing.
	Limits Limits
}

// Launcher starts a plugin and runs its handshake. Launch blocks until the
// handshake has completed or failed, or ctx is done, and returns what the
// handshake established and the running process; a failed launch leaves no
// process behind. output is called for every line the process writes, in
// order per stream, also after Launch returns; it never blocks, and copies
// what it keeps of the line before it returns (see [subprocess.Line]). When
// the launch fails because the process exited, the error wraps a
// [*vmre.ExitError] carrying its status.
type Launcher interface {
	Launch(ctx context.Context, spec Spec, output func(*subprocess.Line)) (subprocess.Status, vmre.Runtime, error)
}
