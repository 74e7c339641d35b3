//go:build linux

package subprocess_test

import (
	"context"
	"sync"
	"testing"
	"time"

	"github.com/vmre/vmre/subprocess"
	"go.uber.org/goleak"
)

// TestLaunchStopCyclesLeakNothing runs 1,000 launch -> handshake -> stop
// cycles (two at a time) of a plugin that exits at SIGTERM, then counts
// what is left: descriptors (/proc/self/fd), child processes, zombies
// included (/proc/self/task/*/children), and goroutines (goleak, minus the
// package's two process-wide ones). All three must be back where they
// were. It is not parallel, so that the counts are its own.
// noRaceExitDelay keeps a plugin built with -race from sleeping a second
// at exit (the race runtime's default atexit_sleep_ms=1000), which would
// make every Stop take a second.
const noRaceExitDelay = "GORACE=atexit_sleep_ms=0"

func TestLaunchStopCyclesLeakNothing(t *testing.T) {
	cycles := 1000
	if testing.Short() {
		cycles = 100
	}
	const workers = 2

	// Warm up: the first launch starts the spawner and the watchdog shell
	// (a child that lives on), and the runtime's poller.
	_, p := mustBootstrap(t, "tiny", nil, noRaceExitDelay)
	p.Stop(t.Context())
	fds, children := countFds(t), countChildren(t)

	start := time.Now()
	var wg sync.WaitGroup
	errs := make(chan error, workers)
	for w := range workers {
		wg.Go(func() {
			for i := w; i < cycles; i += workers {
				p, err := subprocess.Bootstrap(context.Background(), childCmd(t, "tiny", noRaceExitDelay), &subprocess.Config{HandshakeTimeout: time.Minute})
				if err != nil {
					errs <- err
					return
				}
				ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
				p.Stop(ctx)
				cancel()
				select {
				case <-p.Done():
				default:
					t.Errorf("cycle %d: plugin %d not done after Stop", i, p.Pid())
					return
				}
				if es := p.ExitStatus(); es.Code != 0 {
					t.Errorf("cycle %d: plugin exited %+v", i, es)
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatalf("Bootstrap: %v", err)
	}
	t.Logf("%d cycles in %v (%v per cycle per worker)", cycles, time.Since(start), time.Since(start)*workers/time.Duration(cycles))

	if got := countChildren(t); got != children {
		t.Errorf("%d child processes after the cycles, want %d", got, children)
	}
	if got := countFds(t); got != fds {
		t.Errorf("%d descriptors open after the cycles, want %d", got, fds)
	}
	goleak.VerifyNone(t, leakOptions()...)
}
