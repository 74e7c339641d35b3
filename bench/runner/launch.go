package main

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"os/exec"
	"syscall"
	"time"

	"github.com/ava-labs/avalanchego/utils/logging"
)

// rotate runs fs in turn, starting at fs[i%len(fs)], so that no engine is
// always first after a pause: A B C, B C A, C A B, ...
func rotate(i int, fs ...func() error) error {
	for k := range fs {
		if err := fs[(i+k)%len(fs)](); err != nil {
			return err
		}
	}
	return nil
}

const warmups = 5

// benchLaunch measures launch -> handshake done and the stop of a
// cooperative plugin, for vmre, avalanchego and go-plugin, against the
// floor: fork/exec/wait of the same binary in a mode that exits at once,
// and SIGTERM -> wait of the same binary that has announced "ready".
func benchLaunch(ctx context.Context, e *env) error {
	vm := newVmreEngine(e.ava, io.Discard, 10*time.Second, 5*time.Second)
	av := newAvaEngine(e.ava, logging.Discard, 10*time.Second)
	gp := &gpEngine{path: e.gp, timeout: 10 * time.Second}

	launch := newRow("launch -> handshake done (same binary; floor = fork/exec/wait, exits at once)", "ms")
	stopLater := newRow(fmt.Sprintf("stop, cooperative plugin, %s after the handshake (SIGTERM -> reaped; floor = kill+wait)", e.o.stopPause), "ms")
	stopNow := newRow("  the same, right after the handshake (every other run)", "ms")
	gpFloor := sample{}
	// Every other run stops the plugin right after its handshake, the
	// others after stopPause: a node never stops a VM the instant it
	// started, and an engine may finish handshake work in the background.
	var pause time.Duration
	var stop *row

	fs := []func(rec bool) error{
		func(rec bool) error {
			t0 := time.Now()
			p, _, err := vm.launch(ctx, "serve")
			if err != nil {
				return fmt.Errorf("vmre launch: %w", err)
			}
			t1 := time.Now()
			time.Sleep(pause)
			t2 := time.Now()
			p.Stop(ctx)
			t3 := time.Now()
			if rec {
				launch.add(colVmre, ms(t1.Sub(t0)))
				stop.add(colVmre, ms(t3.Sub(t2)))
			}
			return nil
		},
		func(rec bool) error {
			t0 := time.Now()
			s, _, err := av.launch(ctx, "serve")
			if err != nil {
				return fmt.Errorf("avalanchego launch: %w", err)
			}
			t1 := time.Now()
			time.Sleep(pause)
			t2 := time.Now()
			s.Stop(ctx)
			t3 := time.Now()
			if rec {
				launch.add(colAva, ms(t1.Sub(t0)))
				stop.add(colAva, ms(t3.Sub(t2)))
			}
			return nil
		},
		func(rec bool) error {
			t0 := time.Now()
			c, err := gp.launch(ctx)
			if err != nil {
				return fmt.Errorf("go-plugin launch: %w", err)
			}
			t1 := time.Now()
			time.Sleep(pause)
			t2 := time.Now()
			c.Kill()
			t3 := time.Now()
			if rec {
				launch.add(colGP, ms(t1.Sub(t0)))
				stop.add(colGP, ms(t3.Sub(t2)))
			}
			return nil
		},
		func(rec bool) error {
			d, err := forkExecWait(e.ava, "exit")
			if err != nil {
				return err
			}
			s, err := readyTermWait(e.ava, pause)
			if err != nil {
				return err
			}
			if rec {
				launch.add(colFloor, ms(d))
				stop.add(colFloor, ms(s))
			}
			return nil
		},
		func(rec bool) error {
			d, err := forkExecWait(e.gp, "exit")
			if err != nil {
				return err
			}
			if rec {
				gpFloor = append(gpFloor, ms(d))
			}
			return nil
		},
	}
	for i := range warmups + e.o.runs {
		rec := i >= warmups
		if i%2 == 0 {
			pause, stop = e.o.stopPause, stopLater
		} else {
			pause, stop = 0, stopNow
		}
		calls := make([]func() error, len(fs))
		for k, f := range fs {
			calls[k] = func() error { return f(rec) }
		}
		if err := rotate(i, calls...); err != nil {
			return err
		}
		if (i+1)%50 == 0 {
			e.progress("launch: %d/%d", i+1, warmups+e.o.runs)
		}
	}

	over := launch.p50(colVmre) - launch.p50(colFloor)
	ratio := launch.ratio(colAva)
	launch.check(fmt.Sprintf("overhead above floor <= 0.5 ms p50 (got %.3f ms); vmre/ava <= 0.8", over), over <= 0.5 && ratio <= 0.8)
	stopLater.check("p50 <= avalanchego's", stopLater.p50(colVmre) <= stopLater.p50(colAva))
	stopNow.check("p50 <= avalanchego's", stopNow.p50(colVmre) <= stopNow.p50(colAva))
	e.rows = append(e.rows, launch, stopLater, stopNow)
	e.note("go-plugin launches its own binary (bench/plugins/gpplugin, %s); that binary's fork/exec/wait floor is %s / %s ms (p50 / p99).",
		"go-plugin's handshake line on stdout, then a gRPC dial", fmtVal(gpFloor.p50()), fmtVal(gpFloor.p99()))
	return nil
}

// forkExecWait is the launch floor: start the binary, which exits at once,
// and reap it.
func forkExecWait(path string, args ...string) (time.Duration, error) {
	t0 := time.Now()
	cmd := exec.Command(path, args...)
	if err := cmd.Run(); err != nil {
		return 0, fmt.Errorf("floor %s: %w", path, err)
	}
	return time.Since(t0), nil
}

// readyTermWait is the stop floor: start the binary in "ready" mode, wait
// for its "ready" line, then time SIGTERM -> reaped.
func readyTermWait(path string, pause time.Duration) (time.Duration, error) {
	cmd := exec.Command(path, "ready")
	out, err := cmd.StdoutPipe()
	if err != nil {
		return 0, err
	}
	if err := cmd.Start(); err != nil {
		return 0, err
	}
	if _, err := bufio.NewReader(out).ReadString('\n'); err != nil {
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
		return 0, fmt.Errorf("stop floor: read ready: %w", err)
	}
	time.Sleep(pause)
	t0 := time.Now()
	if err := cmd.Process.Signal(syscall.SIGTERM); err != nil {
		return 0, err
	}
	if err := cmd.Wait(); err != nil {
		return 0, fmt.Errorf("stop floor: %w", err)
	}
	return time.Since(t0), nil
}
