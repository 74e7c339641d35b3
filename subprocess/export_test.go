package subprocess

import "time"

// SetFailedAnswerWait sets failedAnswerWait until the returned func is
// called. Only a test that does not run in parallel may call it.
func SetFailedAnswerWait(d time.Duration) (restore func()) {
	old := failedAnswerWait
	failedAnswerWait = d
	return func() { failedAnswerWait = old }
}
