package engine

// One timer for all the engine's periodic work: the liveness probes and
// the resource sampling.
//
// An idle engine's CPU goes mostly to waking up, not to the work it wakes
// up for: every timer that fires wakes a thread, which starts a goroutine,
// which wakes the other idle thread, and wakes the runtime's sysmon from
// its deep sleep. A timer per runtime, 100 runtimes probed every 10 s, is
// ten such wake-ups a second. A job here may run a little before it is
// due (its slack) along with a job that is due, so the probes of many
// runtimes, and the sampling, share wake-ups; jobs that ran together are
// due together again one interval later, so they stay together.

import (
	"container/heap"
	"sync"
	"time"
)

// job is one pending piece of periodic work. Its fields belong to the
// [schedule] it is in.
type job struct {
	due   time.Time     // it runs at the latest then
	slack time.Duration // it may run this much before due, with a job that is due
	run   func()        // called on a goroutine of its own
	index int           // in the schedule's heap; -1 while not scheduled
}

// schedule runs jobs when they are due, on one [Clock] timer armed for the
// earliest. Its methods are called with mu held (the engine's); the timer
// takes mu itself.
type schedule struct {
	mu    *sync.Mutex
	clock Clock
	jobs  jobHeap
	timer Timer     // armed for at, nil while no job is scheduled
	at    time.Time // jobs[0].due when the timer was armed
	gen   uint64    // counts timers armed; a timer that is not the last does nothing
}

// addLocked schedules j to run at due, or up to j.slack before with
// another job. j must not be scheduled already.
func (s *schedule) addLocked(j *job, due time.Time) {
	j.due = due
	heap.Push(&s.jobs, j)
	s.armLocked()
}

// removeLocked unschedules j; it is a no-op if j is not scheduled. A job
// already handed to its goroutine still runs.
func (s *schedule) removeLocked(j *job) {
	if j.index < 0 {
		return
	}
	heap.Remove(&s.jobs, j.index)
	s.armLocked()
}

// stopLocked unschedules every job.
func (s *schedule) stopLocked() {
	for _, j := range s.jobs {
		j.index = -1
	}
	s.jobs = s.jobs[:0]
	s.armLocked()
}

// armLocked sets the timer for the earliest job, or none if there is no
// job.
func (s *schedule) armLocked() {
	if len(s.jobs) > 0 && s.timer != nil && s.at.Equal(s.jobs[0].due) {
		return
	}
	if s.timer != nil {
		s.timer.Stop()
		s.timer = nil
	}
	if len(s.jobs) == 0 {
		return
	}
	s.gen++
	gen := s.gen
	s.at = s.jobs[0].due
	s.timer = s.clock.AfterFunc(s.at.Sub(s.clock.Now()), func() { s.fire(gen) })
}

// fire runs every job due, and every job within its slack of being due,
// then arms the timer for the next.
func (s *schedule) fire(gen uint64) {
	s.mu.Lock()
	if gen != s.gen {
		s.mu.Unlock()
		return // a later arming replaced this timer
	}
	s.timer = nil
	now := s.clock.Now()
	var due []*job
	for _, j := range s.jobs {
		if !j.due.Add(-j.slack).After(now) {
			due = append(due, j)
		}
	}
	for _, j := range due {
		heap.Remove(&s.jobs, j.index)
	}
	s.armLocked()
	s.mu.Unlock()
	for _, j := range due {
		go j.run()
	}
}

// jobHeap orders jobs by due time, earliest first.
type jobHeap []*job

func (h jobHeap) Len() int           { return len(h) }
func (h jobHeap) Less(i, k int) bool { return h[i].due.Before(h[k].due) }
func (h jobHeap) Swap(i, k int) {
	h[i], h[k] = h[k], h[i]
	h[i].index, h[k].index = i, k
}

func (h *jobHeap) Push(x any) {
	j := x.(*job)
	j.index = len(*h)
	*h = append(*h, j)
}

func (h *jobHeap) Pop() any {
	old := *h
	j := old[len(old)-1]
	old[len(old)-1] = nil
	j.index = -1
	*h = old[:len(old)-1]
	return j
}
