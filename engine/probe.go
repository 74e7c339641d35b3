package engine

// Liveness: the grpc.health.v1 probe of a runtime's VM server.

import (
	"errors"
	"strconv"

	"github.com/vmre/vmre/internal/healthprobe"
)

// healthServing is grpc.health.v1.HealthCheckResponse.SERVING.
const healthServing = 1

// probeSlack is the fraction of its interval by which a probe may run
// early, with other work that is due ([schedule]): a tenth. Probes due
// within a second of each other (at 10 s) then share one wake-up.
const probeSlack = 10

// prober probes one runtime. Its fields are guarded by Engine.mu, except
// client, which is set at creation.
type prober struct {
	check    HealthCheck
	client   *healthprobe.Conn
	next     job // the next probe, in Engine.sched while it waits
	stopped  bool
	failures int // in a row
}

// startProbeLocked starts probing r's VM address with check, if check
// probes at all. The caller holds e.mu.
func (e *Engine) startProbeLocked(r *runtime, check HealthCheck) {
	e.stopProbeLocked(r)
	if check.Interval <= 0 || r.info.VMAddr == "" {
		return
	}
	// One HTTP/2 connection per VM, kept between probes: a probe every
	// few seconds must not cost a TCP (or TLS) handshake each time.
	p := &prober{
		check:  check,
		client: healthprobe.New(r.info.VMAddr, e.cfg.VMTLS),
	}
	p.next = job{slack: check.Interval / probeSlack, run: func() { e.probe(r, p) }, index: -1}
	r.probe = p
	r.info.Health = HealthUnknown
	e.sched.addLocked(&p.next, e.cfg.Clock.Now().Add(check.Interval))
}

// stopProbeLocked ends r's probing, and the probe in flight if any. The
// caller holds e.mu.
func (e *Engine) stopProbeLocked(r *runtime) {
	p := r.probe
	if p == nil {
		return
	}
	r.probe = nil
	p.stopped = true
	e.sched.removeLocked(&p.next)
	p.client.Close()
}

// probe runs one probe of p, records its outcome and schedules the next.
func (e *Engine) probe(r *runtime, p *prober) {
	e.mu.Lock()
	if p.stopped || e.closed {
		e.mu.Unlock()
		return
	}
	// Counted under the lock after the closed check, as startLocked does,
	// so Close waits for the probe in flight.
	e.wg.Add(1)
	defer e.wg.Done()
	e.mu.Unlock()

	// A stop of the probe closes the client, which ends the check.
	status, err := p.client.Check(p.check.Timeout)

	e.mu.Lock()
	defer e.mu.Unlock()
	if p.stopped || e.closed {
		return
	}
	was := r.info.Health
	switch {
	case err == nil && status == healthServing:
		p.failures = 0
		r.info.Health = HealthServing
		switch {
		case r.info.State == StateUnhealthy:
			e.transitionLocked(r, e.liveState(r), "liveness probe passed again")
		case was != HealthServing:
			// A change of health alone is an event too, so that watchers
			// and the dashboard see it.
			e.transitionLocked(r, r.info.State, "liveness probe passed")
		}
	case errors.Is(err, healthprobe.ErrUnimplemented):
		r.info.Health = HealthUnimplemented
		e.stopProbeLocked(r)
		e.transitionLocked(r, r.info.State, "vm serves no grpc.health.v1 service: not probing it")
		return
	default:
		p.failures++
		r.info.ProbeFailures++
		r.info.Health = HealthFailing
		why := "status " + healthStatusName(status)
		if err != nil {
			why = err.Error()
		}
		switch {
		case p.failures == p.check.FailureThreshold:
			e.unhealthyLocked(r, "liveness probe failed "+strconv.Itoa(p.failures)+" times in a row: "+why)
			if r.probe != p {
				return
			}
		case was != HealthFailing:
			e.transitionLocked(r, r.info.State, "liveness probe failed ("+strconv.Itoa(p.failures)+" of "+
				strconv.Itoa(p.check.FailureThreshold)+" in a row): "+why)
		}
	}
	e.sched.addLocked(&p.next, e.cfg.Clock.Now().Add(p.check.Interval))
}

// liveState is the state of a runtime whose probe passes.
func (e *Engine) liveState(r *runtime) State {
	if r.info.Attached {
		return StateAttached
	}
	return StateRunning
}

// unhealthyLocked acts on a failed liveness: the runtime is marked
// unhealthy; an attached one is then lost and leaves the live set; a
// launched one whose restart policy restarts on failure is stopped, and
// its exit counts as a failure.
func (e *Engine) unhealthyLocked(r *runtime, why string) {
	r.info.LastError = why
	e.transitionLocked(r, StateUnhealthy, why)
	e.log.Warn().Str("id", r.info.ID).Str("vm", r.info.Name).Str("addr", r.info.VMAddr).Str("reason", why).Msg("runtime unhealthy")
	switch {
	case r.info.Attached:
		e.stopProbeLocked(r)
		r.info.End = EndLost
		e.finishLocked(r, StateLost, "lost: its liveness probe kept failing")
	case r.spec.Restart.Mode != RestartNever && r.proc != nil:
		e.stopProbeLocked(r)
		r.livenessStop = true
		e.transitionLocked(r, StateStopping, "stopping for a restart: liveness failed")
		proc := r.proc
		e.wg.Add(1)
		go func() {
			defer e.wg.Done()
			proc.Stop(e.baseCtx)
		}()
	}
}

// healthStatusName names a grpc.health.v1 serving status.
func healthStatusName(s int32) string {
	switch s {
	case 0:
		return "UNKNOWN"
	case 2:
		return "NOT_SERVING"
	case 3:
		return "SERVICE_UNKNOWN"
	default:
		return strconv.Itoa(int(s))
	}
}
