package subprocess

import (
	"math"
	"time"

	"github.com/vmre/vmre"
)

// StopMargin is what a stop may take beyond its grace periods: the SIGKILL
// after the last one, reaping the process group and reading the last output
// lines. [Config.StopBound] includes it.
const StopMargin = 2 * time.Second

// StopBound returns how long a Stop of a process launched with c may take:
// with VMShutdown the VM's Shutdown call gets up to GracefulTimeout (default
// [vmre.DefaultGracefulTimeout]), then SIGTERM gets another, then the kill
// gets [StopMargin]; without it, SIGTERM's grace period and the margin. With
// the defaults and VMShutdown that is 5 s + 5 s + 2 s = 12 s. A caller that
// bounds Stop's context, and an orchestrator that waits for the engine to
// exit, should allow at least this much. It saturates at the largest
// Duration instead of overflowing. It does not validate c.
func (c *Config) StopBound() time.Duration {
	const forever = time.Duration(math.MaxInt64)
	grace := c.GracefulTimeout
	if grace <= 0 {
		grace = vmre.DefaultGracefulTimeout
	}
	graces := time.Duration(1)
	if c.VMShutdown {
		graces = 2
	}
	if grace > (forever-StopMargin)/graces {
		return forever
	}
	return graces*grace + StopMargin
}
