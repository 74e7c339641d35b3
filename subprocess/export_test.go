package subprocess

import "time"

// SetFailedAnswerWait sets how long a failed handshake launched with c
// waits for its answer to go out.
func SetFailedAnswerWait(c *Config, d time.Duration) { c.failedAnswerWait = d }

// ExitBound bounds a test's wait for processes that must die (by a stop,
// the parent-death signal or the watchdog shell) or for an engine child
// to report its plugins: only a hang is ruled out. On two busy cores the
// chain from an engine's death to its plugins' (the kernel closing the
// watchdog's socket, the shell getting a turn to read EOF and kill, each
// process running its exit) has taken over a second, and an engine
// child's launch over ten. How fast they die is the bench's to measure.
const ExitBound = 2 * time.Minute
