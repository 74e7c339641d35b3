package vmre

import (
	"context"
	"sync"
)

// NewManager returns an empty [Manager]. It is safe for concurrent use.
func NewManager() Manager {
	return &manager{runtimes: make(map[*entry]struct{}), pruneAt: minPruneAt}
}

// minPruneAt is the smallest set size at which TrackRuntime looks for
// exited runtimes to drop.
const minPruneAt = 64

type entry struct {
	stopper Stopper
	done    <-chan struct{} // the Runtime's Done, or nil for a plain Stopper
}

func (e *entry) exited() bool {
	if e.done == nil {
		return false
	}
	select {
	case <-e.done:
		return true
	default:
		return false
	}
}

// manager holds no goroutine per runtime: an exited Runtime is dropped
// when the set is next looked at (Len, Stop) and, so that a manager that
// is never asked does not grow with restarts, when TrackRuntime finds the
// set twice as large as after its last drop.
type manager struct {
	mu       sync.Mutex
	runtimes map[*entry]struct{}
	stopping bool
	pruneAt  int // TrackRuntime drops exited runtimes at this size
}

func (m *manager) TrackRuntime(runtime Stopper) {
	e := &entry{stopper: runtime}
	if r, ok := runtime.(Runtime); ok {
		e.done = r.Done()
	}
	m.mu.Lock()
	if m.stopping {
		m.mu.Unlock()
		// Stop already ran or is running: a late arrival must not outlive it.
		runtime.Stop(context.Background())
		return
	}
	m.runtimes[e] = struct{}{}
	if len(m.runtimes) >= m.pruneAt {
		m.pruneLocked()
		m.pruneAt = max(2*len(m.runtimes), minPruneAt)
	}
	m.mu.Unlock()
}

// pruneLocked drops the runtimes whose process has exited.
func (m *manager) pruneLocked() {
	for e := range m.runtimes {
		if e.exited() {
			delete(m.runtimes, e)
		}
	}
}

func (m *manager) Len() int {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.pruneLocked()
	return len(m.runtimes)
}

func (m *manager) Stop(ctx context.Context) {
	m.mu.Lock()
	m.stopping = true
	m.pruneLocked()
	entries := make([]*entry, 0, len(m.runtimes))
	for e := range m.runtimes {
		entries = append(entries, e)
	}
	m.mu.Unlock()

	var wg sync.WaitGroup
	for _, e := range entries {
		wg.Go(func() {
			e.stopper.Stop(ctx)
			// By the Stopper contract, a Stop that returns before ctx is
			// done has reaped the process. This is what removes a plain
			// Stopper, which has no Done to watch; one cut short by ctx may
			// still be running and stays counted.
			if ctx.Err() == nil {
				m.mu.Lock()
				delete(m.runtimes, e)
				m.mu.Unlock()
			}
		})
	}
	wg.Wait()
}
