package subprocess

import "time"

// SetFailedAnswerWait sets how long a failed handshake launched with c
// waits for its answer to go out.
func SetFailedAnswerWait(c *Config, d time.Duration) { c.failedAnswerWait = d }
