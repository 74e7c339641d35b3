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
