package engine

// The lifecycle of a runtime: launch, state transitions, stop and restart.

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"slices"
	"strconv"
	"time"

	"github.com/vmre/vmre"
	"github.com/vmre/vmre/subprocess"
)

// Launch registers a new runtime for spec and launches it. It blocks until
// the handshake has completed or failed and returns the runtime either way;
// on failure the runtime is in state Failed (and in the history) and the
// error says why. The launch is not bound to ctx: ctx only bounds the wait,
// and a caller that gives up leaves the launch to finish in the engine.
func (e *Engine) Launch(ctx context.Context, spec Spec) (Runtime, error) {
	if e.launcher == nil {
		return Runtime{}, fmt.Errorf("%w: no launcher configured", vmre.ErrInvalidConfig)
	}
	if spec.Path == "" {
		return Runtime{}, fmt.Errorf("%w: empty path", vmre.ErrInvalidConfig)
	}
	spec.Args = slices.Clone(spec.Args)
	if spec.Name == "" {
		spec.Name = filepath.Base(spec.Path)
	}
	var err error
	if spec.Restart, err = spec.Restart.withDefaults(); err != nil {
		return Runtime{}, err
	}
	if spec.Health, err = spec.Health.withDefaults(); err != nil {
		return Runtime{}, err
	}
	if err := spec.Limits.Validate(); err != nil {
		return Runtime{}, err
	}
	if spec.Launch != nil {
		launch := *spec.Launch
		launch.Limits = spec.Limits
		if err := launch.Validate(); err != nil {
			return Runtime{}, err
		}
		spec.Launch = &launch
	}
	e.mu.Lock()
	if e.closed {
		e.mu.Unlock()
		return Runtime{}, ErrClosed
	}
	r := e.addLocked(Runtime{
		Name:    spec.Name,
		Command: append([]string{spec.Path}, spec.Args...),
	})
	r.spec = spec
	// Start in the same critical section as the registration: a Stop or
	// Restart finding the id must see it starting, never a blank record.
	done, err := e.startLocked(r, false)
	e.mu.Unlock()
	if err != nil {
		return Runtime{}, err
	}
	return e.waitLaunch(ctx, r, done)
}

// addLocked registers a new runtime with the next id.
func (e *Engine) addLocked(info Runtime) *runtime {
	e.nextID++
	info.ID = "r" + strconv.Itoa(e.nextID)
	r := &runtime{info: info, out: newOutputRing(e.cfg.OutputLines, e.cfg.OutputBytes, 4*e.cfg.WatchBuffer)}
	e.runtimes[info.ID] = r
	e.order = append(e.order, info.ID)
	return r
}

// startLocked launches r's spec on a goroutine of its own (counting a
// restart if restart is set) and returns a channel closed once the launch
// has an outcome. The caller holds e.mu, and r has no live process. It
// refuses with ErrUnknownRuntime if r has left the registry (evicted from
// the history): a process launched for it would run where List and Get
// cannot see it.
func (e *Engine) startLocked(r *runtime, restart bool) (<-chan struct{}, error) {
	if e.closed {
		return nil, ErrClosed
	}
	if e.runtimes[r.info.ID] != r {
		return nil, ErrUnknownRuntime
	}
	why := "launching"
	if restart {
		why = "restarting"
		r.info.Restarts++
	}
	launchCtx, cancel := context.WithCancel(e.baseCtx)
	done := make(chan struct{})
	r.cancelLaunch, r.launchDone, r.exited = cancel, done, make(chan struct{})
	r.stopRequested, r.livenessStop = false, false
	e.cancelBackoffLocked(r)
	r.proc, r.launchErr = nil, nil
	if r.inHistory {
		r.inHistory = false
		e.history = slices.DeleteFunc(e.history, func(id string) bool { return id == r.info.ID })
	}
	r.info.Pid, r.info.VMAddr, r.info.ProtocolVersion = 0, "", 0
	r.info.StartedAt, r.info.HandshakeDuration = time.Now(), 0
	r.info.ExitedAt, r.info.Exit, r.info.LastError = time.Time{}, nil, ""
	// Health is each process's own: the new one has not been probed yet.
	r.info.Health = HealthUnknown
	r.info.End, r.info.LaunchErr, r.info.StopDuration, r.stopAt = EndNone, nil, 0, time.Time{}
	r.out.setPid(0) // lines before the new handshake come from an unknown pid
	e.transitionLocked(r, StateStarting, why)
	// Add under the lock: Close sets closed under it before it waits, so
	// no Add can race with that Wait.
	e.wg.Add(1)
	go func() {
		defer e.wg.Done()
		e.launch(launchCtx, cancel, r, done)
	}()
	return done, nil
}

// waitLaunch waits for the launch started by startLocked to have an
// outcome, or for ctx to end, and reports it. The caller holds no lock.
func (e *Engine) waitLaunch(ctx context.Context, r *runtime, done <-chan struct{}) (Runtime, error) {
	select {
	case <-done:
	case <-ctx.Done():
		return e.snapshotOf(r), fmt.Errorf("wait for launch of %s: %w", r.info.ID, ctx.Err())
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	info := r.info.clone()
	if info.State.Ended() {
		if r.stopRequested {
			return info, fmt.Errorf("launch %s: %w", info.ID, ErrStopped)
		}
		return info, fmt.Errorf("launch %s: %w", info.ID, r.launchErr)
	}
	return info, nil
}

// launch runs one launch to its outcome, then, on success, records the
// process's exit when it comes (see waitExit). It runs on its own
// goroutine, tracked by e.wg.
func (e *Engine) launch(ctx context.Context, cancel context.CancelFunc, r *runtime, done chan struct{}) {
	status, proc, err := e.launcher.Launch(ctx, r.spec, r.out.add)

	e.mu.Lock()
	if err != nil {
		defer cancel()
		r.info.ExitedAt = time.Now()
		var exitErr *vmre.ExitError
		if errors.As(err, &exitErr) {
			exit := exitErr.ExitStatus
			r.info.Exit = &exit
			r.info.Pid = exitErr.Pid
		}
		if r.stopRequested {
			// A Stop or the engine's Close ended the launch: no failure.
			e.log.Info().Str("id", r.info.ID).Str("vm", r.info.Name).Err(err).Msg("launch stopped before its handshake")
			r.info.End = EndStopped
			e.stoppedLocked(r)
			e.finishLocked(r, StateExited, ErrStopped.Error())
		} else {
			e.log.Warn().Str("id", r.info.ID).Str("vm", r.info.Name).Err(err).Msg("launch failed")
			r.info.LastError = err.Error()
			r.info.End, r.info.LaunchErr = EndLaunchFailed, err
			r.launchErr = err
			e.endedLocked(r, StateFailed, "launch failed: "+err.Error(), true)
		}
		close(done)
		close(r.exited)
		e.mu.Unlock()
		return
	}
	r.proc = proc
	r.info.Pid = status.Pid
	r.info.VMAddr = status.Addr
	r.info.ProtocolVersion = status.ProtocolVersion
	if !status.StartedAt.IsZero() {
		r.info.StartedAt = status.StartedAt
	}
	r.info.HandshakeDuration = status.HandshakeDuration
	r.out.setPid(status.Pid)
	stopNow := r.stopRequested
	if !stopNow {
		r.runningSince = e.cfg.Clock.Now()
		e.transitionLocked(r, StateRunning, "handshake completed in "+status.HandshakeDuration.Round(time.Microsecond).String())
		e.startProbeLocked(r, r.spec.Health)
	}
	exited := r.exited
	e.mu.Unlock()

	e.log.Info().Str("id", r.info.ID).Str("vm", r.spec.Name).Int("pid", status.Pid).Str("addr", status.Addr).
		Uint32("protocol_version", status.ProtocolVersion).
		Str("handshake", status.HandshakeDuration.Round(time.Microsecond).String()).Msg("runtime running")
	e.manager.TrackRuntime(proc)
	close(done)
	if stopNow {
		// Stop was asked for while the handshake ran; honour it now.
		proc.Stop(context.WithoutCancel(ctx))
	}

	e.waitExit(cancel, r, proc, status, exited)
}

// exitNotifier is a runtime that can call a function once it has ended,
// as [subprocess.Process] does from the goroutine that reaps it.
type exitNotifier interface{ AfterExit(func()) }

// waitExit records proc's exit once it ends (recordExit), then cancels
// the launch's context. A runtime that notifies its exit holds no
// goroutine of the engine until then; any other is waited for on this
// one.
func (e *Engine) waitExit(cancel context.CancelFunc, r *runtime, proc vmre.Runtime, status subprocess.Status, exited chan struct{}) {
	if n, ok := proc.(exitNotifier); ok {
		// The launch's own count is still held, so this Add cannot race
		// with Close's Wait.
		e.wg.Add(1)
		n.AfterExit(func() {
			defer e.wg.Done()
			defer cancel()
			e.recordExit(r, proc, status, exited)
		})
		return
	}
	defer cancel()
	<-proc.Done()
	e.recordExit(r, proc, status, exited)
}

// recordExit records the end of r's process proc, whose launch returned
// status, and closes exited, the launch's channel of r.exited (which a
// restart replaces).
func (e *Engine) recordExit(r *runtime, proc vmre.Runtime, status subprocess.Status, exited chan struct{}) {
	exit := proc.ExitStatus()
	e.mu.Lock()
	r.info.ExitedAt = time.Now()
	r.info.Exit = &exit
	e.stopProbeLocked(r)
	r.info.Usage = nil
	e.stoppedLocked(r)
	state, message := StateFailed, ""
	switch {
	case r.stopRequested:
		r.info.End, state, message = EndStopped, StateExited, "stopped: "+exit.String()
	case r.livenessStop:
		r.info.End = EndLiveness
		r.info.LastError = "liveness failed; stopped: " + exit.String()
		message = r.info.LastError
	case exit.Success():
		r.info.End, state, message = EndExited, StateExited, "exited on its own: "+exit.String()
	default:
		r.info.End = EndFailed
		// The reason a plugin gives before it dies may be on either
		// stream: the last lines of both go with the status.
		r.info.LastError = "exited on its own: " + exit.String() + r.out.summary(exitSummaryLines)
		message = r.info.LastError
	}
	failed := state == StateFailed
	// Logged before what follows from it (a relaunch, giving up).
	ended := e.log.Info()
	if failed {
		ended = e.log.Warn()
	}
	ended.Str("id", r.info.ID).Str("vm", r.spec.Name).Int("pid", status.Pid).Str("exit", exit.String()).Msg("runtime ended")
	if r.info.End == EndStopped {
		e.finishLocked(r, state, message)
	} else {
		e.endedLocked(r, state, message, failed)
	}
	close(exited)
	e.mu.Unlock()
}

// stoppedLocked records how long the stop of r's launch took, if one
// began; the caller holds e.mu and has just recorded the exit.
func (e *Engine) stoppedLocked(r *runtime) {
	if !r.stopAt.IsZero() {
		r.info.StopDuration = max(r.info.ExitedAt.Sub(r.stopAt), 0)
	}
}

// transitionLocked moves r to state, records the event and tells watchers.
// Entering StateStopping starts the clock of the launch's stop.
func (e *Engine) transitionLocked(r *runtime, state State, message string) {
	if state == StateStopping && r.stopAt.IsZero() {
		r.stopAt = time.Now()
	}
	r.info.State = state
	ev := Event{Time: e.cfg.Clock.Now(), State: state, Message: message}
	r.events = append(r.events, ev)
	if over := len(r.events) - e.cfg.Events; over > 0 {
		r.events = slices.Delete(r.events, 0, over)
	}
	e.publishLocked(Change{Kind: ChangeUpdated, Runtime: r.info.clone(), Event: ev, Time: ev.Time})
}

// endLocked moves an ended runtime into the history, evicting the oldest
// ended runtimes beyond the bound.
func (e *Engine) endLocked(r *runtime) {
	if r.inHistory {
		return
	}
	r.inHistory = true
	e.history = append(e.history, r.info.ID)
	for len(e.history) > e.cfg.History {
		id := e.history[0]
		e.history = e.history[1:]
		e.removeLocked(id)
	}
}

// removeLocked forgets the runtime with the given id, ends its output
// followers and tells watchers. An id no longer registered is ignored, so
// a stale history entry cannot bring the engine down.
func (e *Engine) removeLocked(id string) {
	old, ok := e.runtimes[id]
	if !ok {
		return
	}
	e.stopProbeLocked(old)
	e.cancelBackoffLocked(old)
	delete(e.runtimes, id)
	e.order = slices.DeleteFunc(e.order, func(o string) bool { return o == id })
	old.out.close()
	e.publishLocked(Change{Kind: ChangeRemoved, RemovedID: id, Time: time.Now()})
}

// Stop stops the runtime with the given id and returns it once its process
// has exited, or when ctx is done (the stop then completes in the
// background). Stopping an ended runtime returns it unchanged. A runtime
// that is still starting has its launch aborted. Restarts of the runtime
// accepted before this Stop (see [Engine.Restart]) launch nothing after it:
// the one waiting for its turn fails at once, the one under way fails once
// its stop ends, or has its launch aborted. Attached runtimes cannot be
// stopped: [ErrAttached].
func (e *Engine) Stop(ctx context.Context, id string) (Runtime, error) {
	e.mu.Lock()
	r, ok := e.runtimes[id]
	if !ok {
		e.mu.Unlock()
		return Runtime{}, fmt.Errorf("stop %q: %w", id, ErrUnknownRuntime)
	}
	// A restart accepted before this Stop must not relaunch after it: the
	// one under way sees r.stops change, the queued one ends here.
	r.stops++
	if op := r.queued; op != nil {
		r.queued = nil
		endRestart(op, r.info.clone(), fmt.Errorf("restart %s: %w", id, errCancelledByStop))
	}
	e.mu.Unlock()
	return e.stop(ctx, r)
}

func (e *Engine) stop(ctx context.Context, r *runtime) (Runtime, error) {
	e.mu.Lock()
	if r.info.Attached {
		info := r.info.clone()
		e.mu.Unlock()
		return info, fmt.Errorf("stop %s: %w", info.ID, ErrAttached)
	}
	exited := r.exited
	var proc vmre.Runtime
	switch r.info.State {
	case StateStarting, StateRunning, StateUnhealthy:
		r.stopRequested = true
		e.stopProbeLocked(r)
		e.transitionLocked(r, StateStopping, "stop requested")
		if r.proc == nil {
			// Still in its handshake: abort the launch, which kills the
			// process.
			r.cancelLaunch()
		}
		proc = r.proc
	case StateStopping:
		// Perhaps a stop of the liveness probe's: from now on it is this
		// Stop's, and no relaunch follows.
		r.stopRequested = true
		proc = r.proc
	case StateBackoff:
		e.cancelBackoffLocked(r)
		e.finishLocked(r, StateExited, "stop requested: relaunch cancelled")
		info := r.info.clone()
		e.mu.Unlock()
		return info, nil
	default:
		info := r.info.clone()
		e.mu.Unlock()
		return info, nil
	}
	e.mu.Unlock()

	e.log.Info().Str("id", r.info.ID).Msg("stopping runtime")
	if proc != nil {
		proc.Stop(ctx)
	}
	select {
	case <-exited:
	case <-ctx.Done():
		return e.snapshotOf(r), fmt.Errorf("stop %s: %w", r.info.ID, ctx.Err())
	}
	return e.snapshotOf(r), nil
}

// Restart stops the runtime if it runs, then launches its command again
// under the same id, and returns it once the new process has handshaken or
// failed to. Ended runtimes in the history can be restarted too. Attached
// runtimes cannot: [ErrAttached]. A Restart whose ctx is already done does
// nothing (no stop, no launch) and returns the runtime and ctx's error.
//
// Once Restart has accepted the request (the runtime exists, is not
// attached, the engine is open and ctx is not done), ctx only bounds the
// wait: a caller that gives up gets the runtime as it is then and ctx's
// error, and the stop and the relaunch still happen in the engine (watch
// or Get the runtime for the outcome). Restarts of one runtime run one at
// a time, each a full stop and relaunch, and requests coalesce: a Restart
// accepted while a restart of the runtime waits for its turn joins that
// restart and returns its result. So at most one restart waits behind the
// one under way, and a Restart accepted after the stop of the one under
// way began still restarts the runtime, once. An [Engine.Stop] call wins
// over the restarts accepted before it: the waiting one ends at once, the
// one under way launches nothing after the Stop, or has its launch
// aborted; they fail with [ErrStopped]. [Engine.Close] waits for restarts
// under way and ends them: a relaunch not yet begun fails with
// [ErrClosed], one in its handshake is aborted.
//
// Restart is safe for concurrent use.
func (e *Engine) Restart(ctx context.Context, id string) (Runtime, error) {
	op, rt, err := e.acceptRestart(ctx, id)
	if err != nil {
		return rt, err
	}
	return e.awaitRestart(ctx, op)
}

// restartOp is one restart of a runtime, shared by the Restart calls that
// asked for it while it waited for its turn.
type restartOp struct {
	r     *runtime
	ctx   context.Context // the first caller's, without its cancellation
	stops uint64          // r.stops when the restart was queued
	done  chan struct{}   // closed once rt and err are set
	rt    Runtime
	err   error
}

// acceptRestart checks a Restart request and returns the restart that will
// serve it: the runtime's queued restart, which it joins, or a new one it
// queues. The queued restart was accepted after the last Stop (Stop ends
// it), so joining it keeps Stop's precedence.
func (e *Engine) acceptRestart(ctx context.Context, id string) (*restartOp, Runtime, error) {
	e.mu.Lock()
	defer e.mu.Unlock()
	r, ok := e.runtimes[id]
	switch {
	case !ok:
		return nil, Runtime{}, fmt.Errorf("restart %q: %w", id, ErrUnknownRuntime)
	case e.closed:
		return nil, Runtime{}, fmt.Errorf("restart %s: %w", id, ErrClosed)
	case r.info.Attached:
		return nil, r.info.clone(), fmt.Errorf("restart %s: %w", id, ErrAttached)
	case ctx.Err() != nil:
		// Nobody waits for this one (a double-click from a closed tab, a
		// retry whose deadline has passed): queueing it would only stop
		// and relaunch the runtime once more.
		return nil, r.info.clone(), fmt.Errorf("restart %s: %w", id, ctx.Err())
	}
	if r.queued != nil {
		return r.queued, Runtime{}, nil
	}
	// The caller's ctx may end at any moment (an RPC deadline, a closed
	// browser tab); a stop without its relaunch would leave the runtime
	// down. Keep ctx's values only.
	op := &restartOp{r: r, ctx: context.WithoutCancel(ctx), stops: r.stops, done: make(chan struct{})}
	r.queued = op
	if !r.restarting {
		r.restarting = true
		// Add under the lock, after the closed check, as startLocked does:
		// Close waits for the restarts.
		e.wg.Add(1)
		go e.runRestarts(r)
	}
	return op, Runtime{}, nil
}

// awaitRestart waits for op to end, or for ctx to end, and reports it.
func (e *Engine) awaitRestart(ctx context.Context, op *restartOp) (Runtime, error) {
	select {
	case <-op.done:
		return op.rt.clone(), op.err
	case <-ctx.Done():
	}
	select {
	case <-op.done: // ended just as ctx did: report the outcome
		return op.rt.clone(), op.err
	default:
		return e.snapshotOf(op.r), fmt.Errorf("wait for restart of %s: %w", op.r.info.ID, ctx.Err())
	}
}

// endRestart gives op's callers its outcome.
func endRestart(op *restartOp, rt Runtime, err error) {
	op.rt, op.err = rt, err
	close(op.done)
}

// runRestarts runs r's queued restarts one at a time until none is left.
// It runs on a goroutine tracked by e.wg, at most one per runtime
// (r.restarting).
func (e *Engine) runRestarts(r *runtime) {
	defer e.wg.Done()
	for {
		e.mu.Lock()
		op := r.queued
		if op == nil {
			r.restarting = false
			e.mu.Unlock()
			return
		}
		// It begins: a Restart from now on queues the next one.
		r.queued = nil
		e.mu.Unlock()
		rt, err := e.restart(op.ctx, r, op.stops)
		endRestart(op, rt, err)
	}
}

// restart stops r and launches it again, unless a Stop has been made since
// the restart was accepted (r.stops is no longer stops). It runs on the
// goroutine of runRestarts, with a ctx that does not end.
func (e *Engine) restart(ctx context.Context, r *runtime, stops uint64) (Runtime, error) {
	// stop fails only for an attached runtime, refused when the restart was
	// accepted, or when ctx ends, which this one does not.
	_, _ = e.stop(ctx, r)
	// Check and launch under one lock: the runtime, now ended, may be
	// evicted from the history, or stopped again, the moment e.mu is free.
	e.mu.Lock()
	if r.stops != stops {
		info := r.info.clone()
		e.mu.Unlock()
		return info, fmt.Errorf("restart %s: %w", info.ID, errCancelledByStop)
	}
	// An operator's restart is not a failure, and gives a runtime that
	// failed for good its whole restart budget back.
	r.streak, r.failTimes, r.info.Failures = 0, nil, 0
	done, err := e.startLocked(r, true)
	e.mu.Unlock()
	if err != nil {
		return Runtime{}, fmt.Errorf("restart %s: %w", r.info.ID, err)
	}
	return e.waitLaunch(ctx, r, done)
}
