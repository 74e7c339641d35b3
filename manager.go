package vmre

import (
	"context"
	"sync"
)

// NewManager returns an empty [Manager]. It is safe for concurrent use.
func NewManager() Manager {
	return &manager{runtimes: make(map[*entry]struct{})}
}

type entry struct {
	stopper Stopper
}

type manager struct {
	mu       sync.Mutex
	runtimes map[*entry]struct{}
	stopping bool
	watchers sync.WaitGroup // goroutines forgetting exited runtimes
}

func (m *manager) TrackRuntime(runtime Stopper) {
	e := &entry{stopper: runtime}
	m.mu.Lock()
	if m.stopping {
		m.mu.Unlock()
		// Stop already ran or is running: a late arrival must not outlive it.
		runtime.Stop(context.Background())
		return
	}
	m.runtimes[e] = struct{}{}
	if r, ok := runtime.(Runtime); ok {
		m.watchers.Add(1)
		go m.forgetOnExit(e, r.Done())
	}
	m.mu.Unlock()
}

// forgetOnExit removes e once its process has exited, so an exited runtime
// is neither counted nor stopped again.
func (m *manager) forgetOnExit(e *entry, done <-chan struct{}) {
	defer m.watchers.Done()
	<-done
	m.mu.Lock()
	delete(m.runtimes, e)
	m.mu.Unlock()
}

func (m *manager) Len() int {
	m.mu.Lock()
	defer m.mu.Unlock()
	return len(m.runtimes)
}

func (m *manager) Stop(ctx context.Context) {
	m.mu.Lock()
	m.stopping = true
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

	// Wait for the exit watchers only when every runtime has really exited;
	// a Stop cut short by ctx leaves them to finish on their own.
	if ctx.Err() == nil {
		m.watchers.Wait()
	}
}
