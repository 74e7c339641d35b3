package engine

import "context"

// AcceptRestart is Restart cut where the engine has accepted the request:
// it returns once Restart would be waiting, with a function that waits as
// Restart does (bounded by ctx). Tests use it to know that a restart was
// accepted before they go on.
func (e *Engine) AcceptRestart(ctx context.Context, id string) (wait func() (Runtime, error), rt Runtime, err error) {
	op, rt, err := e.acceptRestart(ctx, id)
	if err != nil {
		return nil, rt, err
	}
	return func() (Runtime, error) { return e.awaitRestart(ctx, op) }, Runtime{}, nil
}

// RestartQueued reports whether a restart of id waits for its turn.
func (e *Engine) RestartQueued(id string) bool {
	e.mu.Lock()
	defer e.mu.Unlock()
	r := e.runtimes[id]
	return r != nil && r.queued != nil
}
