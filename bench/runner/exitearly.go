package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os/exec"
	"strconv"
	"strings"
	"time"

	"github.com/ava-labs/avalanchego/utils/logging"
	"github.com/vmre/vmre"
	"github.com/vmre/vmre/internal/syncbuf"
)

// parseExitStamp finds "exit-at <unix-nanos>" in text.
func parseExitStamp(text string) (time.Time, bool) {
	i := strings.Index(text, "exit-at ")
	if i < 0 {
		return time.Time{}, false
	}
	f := strings.Fields(text[i+len("exit-at "):])
	if len(f) == 0 {
		return time.Time{}, false
	}
	n, err := strconv.ParseInt(strings.Trim(f[0], `"\`), 10, 64)
	if err != nil {
		return time.Time{}, false
	}
	return time.Unix(0, n), true
}

// benchExitEarly measures how long after a plugin's exit (it writes
// "exit-at <now>" on stderr and exits 3 without a handshake) the engine
// reports the failure. The floor is the parent reading the stderr pipe to
// EOF and reaping the process.
func benchExitEarly(ctx context.Context, e *env) error {
	vm := newVmreEngine(e.ava, io.Discard, 5*time.Second, 5*time.Second)
	av := newAvaEngine(e.ava, logging.Discard, 5*time.Second)

	r := newRow("exit before handshake -> engine reports it (time after the exit)", "ms")
	var vmErr, avaErr error

	vmreRun := func(rec bool) error {
		_, _, err := vm.launch(ctx, "exit-early")
		t := time.Now()
		if err == nil {
			return errors.New("vmre: exit-early plugin handshook")
		}
		var xe *vmre.ExitError
		if !errors.As(err, &xe) {
			return fmt.Errorf("vmre: want an *vmre.ExitError, got: %w", err)
		}
		stamp, ok := parseExitStamp(xe.Error())
		if !ok {
			return fmt.Errorf("vmre: no exit-at stamp in stderr tail: %w", err)
		}
		vmErr = err
		if rec {
			r.add(colVmre, ms(t.Sub(stamp)))
		}
		return nil
	}
	avaRun := func() error {
		var stderr syncbuf.Buffer
		_, err := av.launchWith(ctx, io.Discard, &stderr, "exit-early")
		t := time.Now()
		if err == nil {
			return errors.New("avalanchego: exit-early plugin handshook")
		}
		stamp, ok := parseExitStamp(stderr.String())
		if !ok {
			return fmt.Errorf("avalanchego: no exit-at stamp on stderr: %w", err)
		}
		avaErr = err
		r.add(colAva, ms(t.Sub(stamp)))
		return nil
	}
	gp := &gpEngine{path: e.gp, timeout: 5 * time.Second}
	var gpErr error
	gpRun := func(rec bool) error {
		var stderr syncbuf.Buffer
		c, err := gp.launchWith(ctx, &stderr, "exit-early")
		t := time.Now()
		if err == nil {
			c.Kill()
			return errors.New("go-plugin: exit-early plugin handshook")
		}
		stamp, ok := parseExitStamp(stderr.String())
		if !ok {
			return fmt.Errorf("go-plugin: no exit-at stamp on stderr: %w", err)
		}
		gpErr = err
		if rec {
			r.add(colGP, ms(t.Sub(stamp)))
		}
		return nil
	}
	floorRun := func(rec bool) error {
		cmd := exec.Command(e.ava, "exit-early")
		pipe, err := cmd.StderrPipe()
		if err != nil {
			return err
		}
		if err := cmd.Start(); err != nil {
			return err
		}
		b, _ := io.ReadAll(pipe)
		_ = cmd.Wait()
		t := time.Now()
		stamp, ok := parseExitStamp(string(b))
		if !ok {
			return errors.New("floor: no exit-at stamp")
		}
		if rec {
			r.add(colFloor, ms(t.Sub(stamp)))
		}
		return nil
	}

	every := max(1, e.o.exitRuns/max(1, e.o.avaExitRuns))
	avaDone := 0
	for i := range warmups + e.o.exitRuns {
		rec := i >= warmups
		fs := []func() error{
			func() error { return vmreRun(rec) },
			func() error { return floorRun(rec) },
			func() error { return gpRun(rec) },
		}
		if rec && (i-warmups)%every == 0 && avaDone < e.o.avaExitRuns {
			avaDone++
			fs = append(fs, avaRun)
		}
		if err := rotate(i, fs...); err != nil {
			return err
		}
	}
	r.check("vmre <= 20 ms after the exit (p99)", r.p99(colVmre) <= 20)
	e.rows = append(e.rows, r)
	e.note("exit before handshake, vmre's error: %q", errText(vmErr))
	e.note("exit before handshake, avalanchego's error: %q", errText(avaErr))
	gpText, _, cut := strings.Cut(errText(gpErr), "\n")
	if cut {
		gpText += " ..."
	}
	e.note("exit before handshake, go-plugin's error (first line; go-plugin launches bench/plugins/gpplugin): %q", gpText)
	return nil
}

func errText(err error) string {
	if err == nil {
		return ""
	}
	return err.Error()
}
