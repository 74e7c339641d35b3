package engine

// The restart policy: what happens when a launched runtime ends without a
// Stop.

import (
	"math/rand/v2"
	"strconv"
	"time"
)

// endedLocked records that r's launch or process ended without a Stop,
// entering state with message, unless r's restart policy relaunches it:
// then r waits in StateBackoff for its next attempt, or, past its
// MaxRestarts, ends in StateFailed for good. failure tells a failure
// (a failed launch or liveness, a non-zero status, a signal) from a clean
// exit. The caller holds e.mu.
func (e *Engine) endedLocked(r *runtime, state State, message string, failure bool) {
	p := r.spec.Restart
	if e.closed || p.Mode == RestartNever || (p.Mode == RestartOnFailure && !failure) {
		if failure && !e.closed {
			e.logFailedLocked(r, "restart policy "+p.Mode.String(), message)
		}
		e.finishLocked(r, state, message)
		return
	}
	now := e.cfg.Clock.Now()
	// A runtime that ran a whole window without failing starts over.
	if !r.runningSince.IsZero() && now.Sub(r.runningSince) >= p.Window {
		r.streak, r.failTimes = 0, r.failTimes[:0]
	}
	r.runningSince = time.Time{}
	r.streak++
	r.info.Failures = r.streak
	if p.MaxRestarts >= 0 {
		// Only the last MaxRestarts+1 failures matter: a crash loop keeps
		// a fixed amount of memory however long it lasts.
		if len(r.failTimes) > p.MaxRestarts {
			r.failTimes = append(r.failTimes[:0], r.failTimes[len(r.failTimes)-p.MaxRestarts:]...)
		}
		r.failTimes = append(r.failTimes, now)
		if len(r.failTimes) > p.MaxRestarts && now.Sub(r.failTimes[0]) <= p.Window {
			why := strconv.Itoa(len(r.failTimes)) + " failures within " + p.Window.String() +
				" (max restarts " + strconv.Itoa(p.MaxRestarts) + ")"
			e.logFailedLocked(r, why, message)
			e.finishLocked(r, StateFailed, message+"; giving up: "+why)
			return
		}
	}
	delay := backoffDelay(p, r.streak)
	r.info.NextAttempt = now.Add(delay)
	r.backoffGen++
	gen := r.backoffGen
	r.backoff = e.cfg.Clock.AfterFunc(delay, func() { e.relaunch(r, gen) })
	wait := delay.Round(time.Millisecond).String()
	e.transitionLocked(r, StateBackoff, message+"; relaunch in "+wait)
	e.log.Info().Str("id", r.info.ID).Str("vm", r.spec.Name).Int("failures", r.streak).Str("backoff", wait).
		Msg("runtime relaunch scheduled")
}

// logFailedLocked logs that r failed and will not be relaunched: the
// verdict after the events of the failure itself (a failed launch, an
// exit), with why no relaunch follows and what the failure was.
func (e *Engine) logFailedLocked(r *runtime, why, failure string) {
	e.log.Error().Str("id", r.info.ID).Str("vm", r.spec.Name).Str("reason", why).Str("last_failure", failure).
		Msg("runtime failed; not relaunching")
}

// finishLocked moves r to its final state and into the history.
func (e *Engine) finishLocked(r *runtime, state State, message string) {
	r.runningSince = time.Time{}
	e.transitionLocked(r, state, message)
	e.endLocked(r)
}

// backoffDelay is the wait before the n-th consecutive attempt (n >= 1):
// InitialBackoff doubled n-1 times, capped at MaxBackoff, minus up to a
// fifth at random so that runtimes that failed together spread out. It
// never exceeds the cap.
func backoffDelay(p RestartPolicy, n int) time.Duration {
	d := p.InitialBackoff
	for i := 1; i < n && d < p.MaxBackoff; i++ {
		d *= 2
	}
	d = min(d, p.MaxBackoff)
	if jitter := int64(d / 5); jitter > 0 {
		d -= time.Duration(rand.Int64N(jitter + 1))
	}
	return d
}

// relaunch starts r's next attempt once its backoff has passed, unless a
// Stop, a Restart or Close came first (gen no longer current).
func (e *Engine) relaunch(r *runtime, gen uint64) {
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.closed || r.backoffGen != gen || r.info.State != StateBackoff {
		return
	}
	r.backoff = nil
	// startLocked refuses only when r has left the registry or the engine
	// is closed; then there is nothing to relaunch.
	_, _ = e.startLocked(r, true)
}

// cancelBackoffLocked cancels r's pending relaunch, if any.
func (e *Engine) cancelBackoffLocked(r *runtime) {
	r.backoffGen++
	if r.backoff != nil {
		r.backoff.Stop()
		r.backoff = nil
	}
	r.info.NextAttempt = time.Time{}
}
