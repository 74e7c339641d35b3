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
	launch := newRow("launch to running (handshake), for the crash-to-running row", "ms")
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

	// Crash to running again.
	w := eng.Watch()
	defer w.Close()
	crash := newRow(fmt.Sprintf("SIGKILL to running again, restart on-failure, initial backoff %s", backoff), "ms")
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
		for {
			c, err := w.Next(ctx)
			if err != nil {
				return err
			}
			if c.Kind == engine.ChangeUpdated && c.Runtime.ID == id && c.Runtime.State == engine.StateRunning && c.Runtime.Pid != rt.Pid {
				break
			}
		}
		crash.add(colVmre, ms(time.Since(t0)))
	}
	bound := ms(backoff) + launch.p50(colVmre)
	crash.check(fmt.Sprintf("p50 <= initial backoff + launch p50 (%.1f ms)", bound), crash.p50(colVmre) <= bound)
	e.rows = append(e.rows, idle, launch, crash)
	return nil
}
