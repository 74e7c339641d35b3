package config

import (
	"context"
	"sync"

	"github.com/rs/zerolog"
	"github.com/vmre/vmre/engine"
)

// Runner runs the runtimes of a configuration file on an engine and
// applies reloads of that file. It is safe for concurrent use; Start and
// Reload run one at a time.
type Runner struct {
	eng *engine.Engine
	log zerolog.Logger

	mu   sync.Mutex
	file *File
	ids  map[string]string // runtime name -> engine id of its current runtime
}

// NewRunner returns a Runner for file's runtimes on eng; it starts nothing
// (see [Runner.Start]). log receives one line per reload.
func NewRunner(eng *engine.Engine, file *File, log zerolog.Logger) *Runner {
	return &Runner{eng: eng, log: log, file: file, ids: make(map[string]string)}
}

// Start launches every runtime of the file at once and blocks until each
// launch has completed its handshake or failed. A failed launch is not an
// error of Start: the runtime stays in the engine, where its restart
// policy applies, and the engine logs the failure. ctx bounds only the wait (see
// engine.Engine.Launch).
func (r *Runner) Start(ctx context.Context) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.apply(ctx, Plan{Start: r.file.Runtimes})
}

// Reload re-reads the runner's file and applies it: runtimes added to the
// file start, removed ones stop, changed ones are stopped and launched
// again (under a new engine id), and the others are left alone. It blocks
// until the stops are done and the launches have completed or failed, and
// returns the plan it applied. A file that does not load or validate
// changes nothing: Reload logs that and returns the error of [Load]. The
// reload, once begun, is not cut short by ctx, which bounds only the wait
// for the launches.
func (r *Runner) Reload(ctx context.Context) (Plan, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	next, err := Load(r.file.Path)
	if err != nil {
		r.log.Error().Err(err).Str("file", r.file.Path).Msg("config reload refused; the running runtimes are unchanged")
		return Plan{}, err
	}
	plan := Diff(r.file, next)
	r.file = next
	r.apply(ctx, plan)
	r.log.Info().Str("file", next.Path).Int("started", len(plan.Start)).Int("stopped", len(plan.Stop)).
		Int("restarted", len(plan.Restart)).Int("unchanged", len(plan.Keep)).Msg("config reloaded")
	return plan, nil
}

// File returns the file the runner applied last.
func (r *Runner) File() *File {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.file
}

// ID returns the engine id of the runtime the runner launched last under
// name, and whether there is one.
func (r *Runner) ID(name string) (string, bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	id, ok := r.ids[name]
	return id, ok
}

// apply stops the runtimes plan stops or restarts, then launches the ones
// it starts or restarts, each set all at once. The caller holds r.mu.
func (r *Runner) apply(ctx context.Context, plan Plan) {
	var wg sync.WaitGroup
	stop := func(name string) {
		id, ok := r.ids[name]
		if !ok {
			return
		}
		delete(r.ids, name)
		wg.Go(func() {
			// A stop once begun is finished: a half-applied reload would
			// leave two processes of one runtime.
			if _, err := r.eng.Stop(context.WithoutCancel(ctx), id); err != nil {
				r.log.Warn().Err(err).Str("vm", name).Str("id", id).Msg("stop runtime for config reload")
			}
		})
	}
	for _, name := range plan.Stop {
		stop(name)
	}
	for _, rt := range plan.Restart {
		stop(rt.Name)
	}
	wg.Wait()

	launches := append(append([]Runtime(nil), plan.Start...), plan.Restart...)
	ids := make([]string, len(launches))
	for i, rt := range launches {
		wg.Go(func() {
			// The engine logs a failed launch and keeps the runtime.
			got, _ := r.eng.Launch(ctx, rt.Spec)
			ids[i] = got.ID
		})
	}
	wg.Wait()
	for i, rt := range launches {
		if ids[i] != "" {
			r.ids[rt.Name] = ids[i]
		}
	}
}
