package config

import (
	"fmt"
	"time"

	"github.com/vmre/vmre"
)

// RestartMode says when a runtime that ended is launched again.
type RestartMode int

// Restart modes.
const (
	RestartNever RestartMode = iota
	RestartOnFailure
	RestartAlways
)

var restartModeNames = [...]string{"never", "on-failure", "always"}

// UnmarshalText parses "never", "on-failure" or "always".
func (m *RestartMode) UnmarshalText(text []byte) error {
	for i, name := range restartModeNames {
		if string(text) == name {
			*m = RestartMode(i)
			return nil
		}
	}
	return fmt.Errorf("%w: %q is not one of never, on-failure, always", vmre.ErrInvalidConfig, text)
}

// RestartPolicy says whether and when a runtime is relaunched.
type RestartPolicy struct {
	Mode           RestartMode
	InitialBackoff time.Duration
	MaxBackoff     time.Duration
	MaxRestarts    int
	Window         time.Duration
}

// HealthCheck configures a runtime's liveness probe.
type HealthCheck struct {
	Interval         time.Duration
	Timeout          time.Duration
	FailureThreshold int
}

// Limits caps a runtime's resources.
type Limits struct {
	MemoryBytes int64
	OpenFiles   int
	Processes   int
}
