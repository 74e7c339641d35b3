package engine

// Resource sampling: what each launched runtime's process tree uses.

import (
	"time"

	"github.com/vmre/vmre"
)

// pidProcess is a [vmre.Runtime] whose pid the engine can sample: a real
// process, as the subprocess launcher's are. Processes of other launchers
// are not sampled.
type pidProcess interface {
	Pid() int
}

// cgroupProcess is a [vmre.Runtime] that runs in a cgroup of its own, whose
// files the engine reads instead of walking the process tree.
type cgroupProcess interface {
	CgroupDir() string
}

// sampleTarget is one runtime to sample.
type sampleTarget struct {
	r      *runtime
	proc   vmre.Runtime
	pid    int
	cgroup string
}

// usageRecord is what the sampler remembers of a runtime between samples.
type usageRecord struct {
	proc vmre.Runtime // the process the record is about
	cpu  float64
	at   time.Time
}

// scheduleSampleLocked sets the next sampling. The caller holds e.mu.
func (e *Engine) scheduleSampleLocked() {
	if e.cfg.SampleInterval > 0 && !e.closed {
		e.sched.addLocked(&e.sampler, e.cfg.Clock.Now().Add(e.cfg.SampleInterval))
	}
}

// sample takes one sample of every launched runtime with a live process,
// publishes it, and schedules the next. Each runtime gets at most one
// [ChangeUsage] per interval, so watchers are never flooded by it; a tick
// without a sampled runtime reads nothing from /proc.
func (e *Engine) sample() {
	e.mu.Lock()
	if e.closed {
		e.mu.Unlock()
		return
	}
	var targets []sampleTarget
	for _, id := range e.order {
		r := e.runtimes[id]
		if r.proc == nil || r.info.State.Ended() || r.info.Attached {
			continue
		}
		pp, ok := r.proc.(pidProcess)
		if !ok {
			continue
		}
		t := sampleTarget{r: r, proc: r.proc, pid: pp.Pid()}
		if cp, ok := r.proc.(cgroupProcess); ok {
			t.cgroup = cp.CgroupDir()
		}
		targets = append(targets, t)
	}
	if len(targets) == 0 {
		e.scheduleSampleLocked()
		e.mu.Unlock()
		return
	}
	e.wg.Add(1)
	defer e.wg.Done()
	e.sampling = true
	e.mu.Unlock()

	now := e.cfg.Clock.Now()
	usages := e.scanner.sample(targets)

	e.mu.Lock()
	defer e.mu.Unlock()
	e.sampling = false
	if e.closed {
		e.scanner.close()
		return
	}
	for i, t := range targets {
		u := usages[i]
		if u == nil || t.r.proc != t.proc || t.r.info.State.Ended() {
			continue
		}
		u.Time = now
		rec := &t.r.usage
		if rec.proc == t.proc && now.After(rec.at) {
			u.CPUPercent = max(0, (u.CPUSeconds-rec.cpu)/now.Sub(rec.at).Seconds()*100)
		}
		*rec = usageRecord{proc: t.proc, cpu: u.CPUSeconds, at: now}
		t.r.info.Usage = u
		e.publishLocked(Change{Kind: ChangeUsage, Runtime: t.r.info.clone(), Time: now})
	}
	e.scheduleSampleLocked()
}
