package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"runtime/pprof"
	"strings"
	"syscall"
	"time"

	"github.com/ava-labs/avalanchego/utils/logging"
)

// benchIgnoreTerm measures the stop of a plugin that ignores SIGTERM, with
// the same grace period for both engines (vmre: Config.GracefulTimeout;
// avalanchego: its hard-coded 5 s capped by the Stop context's deadline),
// then counts the goroutines each engine's code has left behind.
func benchIgnoreTerm(ctx context.Context, e *env) error {
	grace := e.o.grace
	vm := newVmreEngine(e.ava, io.Discard, 10*time.Second, grace)
	av := newAvaEngine(e.ava, logging.Discard, 10*time.Second)

	r := newRow(fmt.Sprintf("stop, SIGTERM-ignoring plugin, grace %s (SIGTERM -> Stop returns)", grace), "ms")
	over := newRow("  the same, minus the grace period", "ms")
	left := newRow(fmt.Sprintf("goroutines left in the engine's code after the %d stops above", e.o.termRuns), "count")
	var avaPids []int
	// One cooperative launch and stop of each first, so that process-wide
	// singletons (vmre's spawner thread and watchdog waiter) exist before
	// the count also when this group runs alone (-only term).
	p, _, err := vm.launch(ctx, "serve")
	if err != nil {
		return fmt.Errorf("vmre warm-up launch: %w", err)
	}
	p.Stop(ctx)
	s, _, err := av.launch(ctx, "serve")
	if err != nil {
		return fmt.Errorf("avalanchego warm-up launch: %w", err)
	}
	s.Stop(ctx)
	vmBefore, avaBefore := settledGoroutines()

	for i := range e.o.termRuns {
		err := rotate(i,
			func() error {
				p, _, err := vm.launch(ctx, "ignore-term")
				if err != nil {
					return fmt.Errorf("vmre launch: %w", err)
				}
				t0 := time.Now()
				p.Stop(ctx)
				d := time.Since(t0)
				select {
				case <-p.Done():
				default:
					return errors.New("vmre: Stop returned before the process was reaped")
				}
				r.add(colVmre, ms(d))
				over.add(colVmre, ms(d-grace))
				return nil
			},
			func() error {
				s, st, err := av.launch(ctx, "ignore-term")
				if err != nil {
					return fmt.Errorf("avalanchego launch: %w", err)
				}
				sctx, cancel := context.WithTimeout(ctx, grace)
				t0 := time.Now()
				s.Stop(sctx)
				d := time.Since(t0)
				cancel()
				avaPids = append(avaPids, st.Pid)
				r.add(colAva, ms(d))
				over.add(colAva, ms(d-grace))
				return nil
			},
		)
		if err != nil {
			return err
		}
	}
	// Give exiting goroutines a moment, then count what is left.
	deadline := time.Now().Add(2 * time.Second)
	var vmAfter, avaAfter int
	for {
		vmAfter, avaAfter = countGoroutines()
		if (vmAfter <= vmBefore && avaAfter <= avaBefore) || time.Now().After(deadline) {
			break
		}
		time.Sleep(50 * time.Millisecond)
	}
	if e.o.leaks {
		vs, as := goroutineStacks()
		fmt.Fprintf(os.Stderr, "vmre goroutines after the stops:\n%s\n\navalanchego goroutines:\n%s\n",
			strings.Join(vs, "\n\n"), strings.Join(as, "\n\n"))
	}
	left.add(colVmre, float64(vmAfter-vmBefore))
	left.add(colAva, float64(avaAfter-avaBefore))
	alive := 0
	for _, pid := range avaPids {
		if syscall.Kill(pid, 0) == nil {
			alive++
		}
	}

	r.check(fmt.Sprintf("<= grace + 10 ms (p99 %s ms)", fmtVal(r.p99(colVmre))), r.p99(colVmre) <= ms(grace)+10)
	left.check("0 (no leaked goroutine)", vmAfter-vmBefore <= 0)
	e.rows = append(e.rows, r, over, left)
	if alive > 0 {
		e.note("avalanchego: %d of %d killed plugins still exist (unreaped) 2 s after Stop returned", alive, len(avaPids))
	}
	return nil
}

// settledGoroutines is countGoroutines once the warm-up's goroutines have
// ended: the same counts three polls in a row, 50 ms apart (at most 2 s).
func settledGoroutines() (vm, ava int) {
	deadline := time.Now().Add(2 * time.Second)
	vm, ava = countGoroutines()
	for same := 0; same < 3 && time.Now().Before(deadline); {
		time.Sleep(50 * time.Millisecond)
		v, a := countGoroutines()
		if v == vm && a == ava {
			same++
		} else {
			vm, ava, same = v, a, 0
		}
	}
	return vm, ava
}

// countGoroutines counts live goroutines whose stack runs code of vmre's
// packages and of avalanchego's packages.
func countGoroutines() (vmreN, avaN int) {
	vm, ava := goroutineStacks()
	return len(vm), len(ava)
}

// goroutineStacks returns the stacks of live goroutines running (or
// created by) vmre's and avalanchego's code.
func goroutineStacks() (vm, ava []string) {
	var b strings.Builder
	_ = pprof.Lookup("goroutine").WriteTo(&b, 2)
	for _, g := range strings.Split(b.String(), "\n\n") {
		switch {
		case strings.Contains(g, "github.com/vmre/vmre/") && !strings.Contains(g, "github.com/vmre/vmre/bench"):
			vm = append(vm, g)
		case strings.Contains(g, "github.com/ava-labs/avalanchego/"):
			ava = append(ava, g)
		}
	}
	return vm, ava
}
