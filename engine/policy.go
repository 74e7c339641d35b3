package engine

import (
	"fmt"
	"time"

	"github.com/vmre/vmre"
	"github.com/vmre/vmre/subprocess"
)

// RestartMode says when the engine relaunches a runtime whose process
// ended without a Stop.
type RestartMode int

// Restart modes. The zero value is RestartNever.
const (
	// RestartNever leaves an ended runtime ended.
	RestartNever RestartMode = iota
	// RestartOnFailure relaunches a runtime whose launch or handshake
	// failed, whose process exited with a non-zero status or a signal, or
	// whose liveness probe failed. A clean exit (status 0) is final.
	RestartOnFailure
	// RestartAlways relaunches a runtime however its process ended, unless
	// a Stop ended it.
	RestartAlways
)

var restartModeNames = [...]string{RestartNever: "never", RestartOnFailure: "on-failure", RestartAlways: "always"}

// String returns "never", "on-failure" or "always".
func (m RestartMode) String() string {
	if m < 0 || int(m) >= len(restartModeNames) {
		return fmt.Sprintf("RestartMode(%d)", int(m))
	}
	return restartModeNames[m]
}

// MarshalText implements [encoding.TextMarshaler] with the names String
// returns.
func (m RestartMode) MarshalText() ([]byte, error) {
	if m < 0 || int(m) >= len(restartModeNames) {
		return nil, fmt.Errorf("%w: restart mode %d", vmre.ErrInvalidConfig, int(m))
	}
	return []byte(restartModeNames[m]), nil
}

// UnmarshalText parses "never", "on-failure" or "always". Any other text
// fails with an error wrapping [vmre.ErrInvalidConfig] that lists the
// valid names.
func (m *RestartMode) UnmarshalText(text []byte) error {
	for i, name := range restartModeNames {
		if string(text) == name {
			*m = RestartMode(i)
			return nil
		}
	}
	return fmt.Errorf("%w: %q is not one of never, on-failure, always", vmre.ErrInvalidConfig, text)
}

// Defaults of [RestartPolicy].
//
// A VM plugin that is down takes its chain down with it, so the first
// relaunch comes after a second, not after Kubernetes' 10 s
// (CrashLoopBackOff), and the doubling stops at Kubernetes' 5 min cap. A
// plugin that fails more than 5 times within 10 min is given up on, as
// systemd's StartLimitBurst=5 gives up on a unit; 10 min is also how long
// Kubernetes wants a container to run before it forgets its backoff.
const (
	DefaultInitialBackoff = time.Second
	DefaultMaxBackoff     = 5 * time.Minute
	DefaultMaxRestarts    = 5
	DefaultRestartWindow  = 10 * time.Minute
)

// RestartPolicy says whether and when the engine relaunches a runtime that
// ended on its own (see [RestartMode]). Between attempts the runtime is in
// [StateBackoff] with [Runtime.NextAttempt] set. The wait before the n-th
// consecutive attempt is InitialBackoff doubled n-1 times, capped at
// MaxBackoff, minus up to a fifth at random (so that runtimes that failed
// together do not retry together). A runtime that ran for Window without
// failing starts over from InitialBackoff. A runtime that fails more than
// MaxRestarts times within Window ends in [StateFailed] for good (until a
// manual Restart). Zero fields mean the defaults above; a negative
// MaxRestarts means no limit.
type RestartPolicy struct {
	Mode           RestartMode
	InitialBackoff time.Duration
	MaxBackoff     time.Duration
	MaxRestarts    int
	Window         time.Duration
}

// withDefaults returns p with its zero fields set to the defaults, or an
// error wrapping [vmre.ErrInvalidConfig].
func (p RestartPolicy) withDefaults() (RestartPolicy, error) {
	if p.InitialBackoff == 0 {
		p.InitialBackoff = DefaultInitialBackoff
	}
	if p.MaxBackoff == 0 {
		p.MaxBackoff = max(DefaultMaxBackoff, p.InitialBackoff)
	}
	if p.MaxRestarts == 0 {
		p.MaxRestarts = DefaultMaxRestarts
	}
	if p.Window == 0 {
		p.Window = DefaultRestartWindow
	}
	switch {
	case p.Mode < RestartNever || p.Mode > RestartAlways:
		return p, fmt.Errorf("%w: restart mode %d", vmre.ErrInvalidConfig, int(p.Mode))
	case p.InitialBackoff < 0:
		return p, fmt.Errorf("%w: restart initial backoff %s is negative", vmre.ErrInvalidConfig, p.InitialBackoff)
	case p.MaxBackoff < p.InitialBackoff:
		return p, fmt.Errorf("%w: restart max backoff %s is below the initial backoff %s", vmre.ErrInvalidConfig, p.MaxBackoff, p.InitialBackoff)
	case p.Window < 0:
		return p, fmt.Errorf("%w: restart window %s is negative", vmre.ErrInvalidConfig, p.Window)
	}
	return p, nil
}

// Defaults of [HealthCheck], once Interval is set: kubelet's probe
// timeout (1 s) and failure threshold (3).
const (
	DefaultHealthTimeout          = time.Second
	DefaultHealthFailureThreshold = 3
)

// HealthCheck configures the liveness probe of a runtime: after the
// handshake the engine calls grpc.health.v1.Health/Check (service "") on
// the VM's address every Interval (a probe may start up to a tenth of
// Interval early, to share a wake-up of the engine with other probes or
// the resource sampling), each call bounded by Timeout, over one
// HTTP/2 connection it keeps for the runtime (a new one after a probe
// that failed on it). FailureThreshold failures in
// a row (an error, a timeout, or any status but SERVING) make the runtime
// [StateUnhealthy]; a launched one is then stopped and relaunched if its
// [RestartPolicy] says so, an attached one becomes [StateLost] and is
// removed. A VM that answers UNIMPLEMENTED serves no health service: that
// is recorded once, as an event, and the probing stops. A zero Interval
// means no probing; a zero Timeout and FailureThreshold mean the defaults
// above. Timeout is capped at Interval.
type HealthCheck struct {
	Interval         time.Duration
	Timeout          time.Duration
	FailureThreshold int
}

// withDefaults returns h with its zero fields set to the defaults, or an
// error wrapping [vmre.ErrInvalidConfig].
func (h HealthCheck) withDefaults() (HealthCheck, error) {
	switch {
	case h.Interval < 0:
		return h, fmt.Errorf("%w: health interval %s is negative", vmre.ErrInvalidConfig, h.Interval)
	case h.Timeout < 0:
		return h, fmt.Errorf("%w: health timeout %s is negative", vmre.ErrInvalidConfig, h.Timeout)
	case h.FailureThreshold < 0:
		return h, fmt.Errorf("%w: health failure threshold %d is negative", vmre.ErrInvalidConfig, h.FailureThreshold)
	case h.Interval == 0:
		return HealthCheck{}, nil
	}
	if h.Timeout == 0 {
		h.Timeout = DefaultHealthTimeout
	}
	h.Timeout = min(h.Timeout, h.Interval)
	if h.FailureThreshold == 0 {
		h.FailureThreshold = DefaultHealthFailureThreshold
	}
	return h, nil
}

// Limits are the resource limits of one runtime's plugin (see
// [subprocess.Limits]); the zero value limits nothing.
type Limits = subprocess.Limits

// Clock is the engine's source of time, injectable so that tests of
// backoff, probes and sampling need not wait in real time. Its timers
// must be safe for concurrent use.
type Clock interface {
	Now() time.Time
	// AfterFunc calls f on a goroutine of its own once d has passed,
	// unless the returned Timer's Stop is called first.
	AfterFunc(d time.Duration, f func()) Timer
}

// Timer is a [Clock]'s pending call.
type Timer interface {
	// Stop prevents the call if it has not started and reports whether
	// it did.
	Stop() bool
}

// realClock is the wall clock.
type realClock struct{}

func (realClock) Now() time.Time { return time.Now() }

func (realClock) AfterFunc(d time.Duration, f func()) Timer { return time.AfterFunc(d, f) }
