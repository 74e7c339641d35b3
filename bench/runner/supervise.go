package main

import (
	"context"
	"fmt"
	"io"
	"syscall"
	"time"

	"github.com/vmre/vmre/engine"
	"github.com/vmre/vmre/subprocess"
)

// benchSupervise measures supervision: the engine's own CPU while
// -supervise-n real plugins sit idle with a liveness probe every 10 s and
// a resource sample every 5 s, and, under restart policy on-failure, the
// time from a plugin's SIGKILL to its runtime running again, next to the
// initial backoff plus the launch time measured in the same run.
func benchSupervise(ctx context.Context, e *env) error {
	n := e.o.superviseN
	const backoff = 200 * time.Millisecond
	eng, err := engine.New(engine.Config{
		Launcher: engine.NewSubprocessLauncher(subprocess.Config{
			Log:              vmreLogger(io.Discard),
			AcceptedVersions: []uint32{avaProtocolVersion},
			HandshakeTimeout: 20 * time.Second,
		}, nil),
		AcceptedVersions: []uint32{avaProtocolVersion},
		SampleInterval:   5 * time.Second,
	})
	if err != nil {
		return err
	}
	defer eng.Close(context.WithoutCancel(ctx))
	spec := engine.Spec{
		Path:    e.ava,
		Args:    []string{"serve"},
		Restart: engine.RestartPolicy{Mode: engine.RestartOnFailure, InitialBackoff: backoff, MaxBackoff: backoff, MaxRestarts: -1},
		Health:  engine.HealthCheck{Interval: 10 * time.Second},
	}
	launch := newRow("launch to running, back to back", "ms")
	ids := make([]string, 0, n)
	for i := range n {
		spec.Name = fmt.Sprintf("vm-%d", i)
		t0 := time.Now()
		rt, err := eng.Launch(ctx, spec)
		if err != nil {
			return err
		}
		launch.add(colVmre, ms(time.Since(t0)))
		ids = append(ids, rt.ID)
	}

	// Idle: let the first probes and samples pass, then measure.
	select {
	case <-time.After(12 * time.Second):
	case <-ctx.Done():
		return ctx.Err()
	}
	stopProfile := func() {}
	if e.o.superviseProfile != "" {
		if stopProfile, err = startCPUProfile(e.o.superviseProfile); err != nil {
			return err
		}
	}
	var before, after syscall.Rusage
	_ = syscall.Getrusage(syscall.RUSAGE_SELF, &before)
	t0 := time.Now()
	select {
	case <-time.After(e.o.superviseIdle):
	case <-ctx.Done():
		return ctx.Err()
	}
	_ = syscall.Getrusage(syscall.RUSAGE_SELF, &after)
	stopProfile()
	wall := time.Since(t0)
	cpu := time.Duration(after.Utime.Nano()+after.Stime.Nano()-before.Utime.Nano()-before.Stime.Nano()) * time.Nanosecond
	pct := 100 * cpu.Seconds() / wall.Seconds()
	serving, sampled := 0, 0
	for _, rt := range eng.List() {
		if rt.Health == engine.HealthServing {
			serving++
		}
		if rt.Usage != nil {
			sampled++
		}
	}
	if serving != n || sampled != n {
		return fmt.Errorf("idle: %d of %d runtimes probed serving, %d sampled", serving, n, sampled)
	}
	idle := newRow(fmt.Sprintf("engine CPU, %d idle runtimes probed every 10 s and sampled every 5 s, over %s", n, e.o.superviseIdle.Round(time.Second)), "% of a core")
	idle.add(colVmre, pct)
	idle.check("<= 0.5% of one core", pct <= 0.5)
	// Most of an idle engine's CPU is waking up (docs/supervision.md): its
	// context switches count the wake-ups of its threads.
	switches := newRow("  engine context switches (getrusage), same window", "/s")
	switches.add(colVmre, float64(after.Nvcsw+after.Nivcsw-before.Nvcsw-before.Nivcsw)/wall.Seconds())

	// Crash to running again. A plugin launched alone after a pause can
	// start slower than one launched right after another (1.3 to 2 times
	// in loaded runs here), so the bound's launch time is taken the way
	// the relaunches happen: one launch between two crash rounds.
	w := eng.Watch()
	defer w.Close()
	crash := newRow(fmt.Sprintf("SIGKILL to running again, restart on-failure, initial backoff %s", backoff), "ms")
	// Where the time goes: the exit seen (backoff entered), the wait the
	// engine chose (jittered down from the backoff), the relaunch.
	seen := newRow("  of which SIGKILL to backoff (exit seen)", "ms")
	waited := newRow("  of which backoff to starting (the jittered wait)", "ms")
	relaunch := newRow("  of which starting to running (relaunch)", "ms")
	spaced := newRow("launch to running, one between two crash rounds", "ms")
	control := engine.Spec{Name: "control", Path: e.ava, Args: []string{"serve"}}
	for round := range e.o.superviseCrashes {
		id := ids[round%len(ids)]
		rt, _, err := eng.Get(id)
		if err != nil {
			return err
		}
		t0 := time.Now()
		if err := syscall.Kill(rt.Pid, syscall.SIGKILL); err != nil {
			return err
		}
		var inBackoff, starting time.Time
		for {
			c, err := w.Next(ctx)
			if err != nil {
				return err
			}
			if c.Kind != engine.ChangeUpdated || c.Runtime.ID != id {
				continue
			}
			switch {
			case c.Runtime.State == engine.StateBackoff && inBackoff.IsZero():
				inBackoff = time.Now()
			case c.Runtime.State == engine.StateStarting && starting.IsZero():
				starting = time.Now()
			}
			if c.Runtime.State == engine.StateRunning && c.Runtime.Pid != rt.Pid {
				break
			}
		}
		now := time.Now()
		crash.add(colVmre, ms(now.Sub(t0)))
		if !inBackoff.IsZero() && !starting.IsZero() { // else a resync hid them
			seen.add(colVmre, ms(inBackoff.Sub(t0)))
			waited.add(colVmre, ms(starting.Sub(inBackoff)))
			relaunch.add(colVmre, ms(now.Sub(starting)))
		}

		select {
		case <-time.After(backoff):
		case <-ctx.Done():
			return ctx.Err()
		}
		t0 = time.Now()
		c, err := eng.Launch(ctx, control)
		if err != nil {
			return err
		}
		spaced.add(colVmre, ms(time.Since(t0)))
		if _, err := eng.Stop(ctx, c.ID); err != nil {
			return err
		}
	}
	bound := ms(backoff) + spaced.p50(colVmre)
	crash.check(fmt.Sprintf("p50 <= initial backoff + launch p50, one between crash rounds (%.1f ms)", bound), crash.p50(colVmre) <= bound)
	e.rows = append(e.rows, idle, switches, launch, spaced, crash, seen, waited, relaunch)
	return nil
}
