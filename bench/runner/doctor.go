package main

import (
	"bytes"
	"context"
	"fmt"
	"os/exec"
	"path/filepath"
	"strings"
	"time"
)

// benchDoctor runs whole programs, as a user or a script would: `vmre
// doctor` on the plugin against avadoctor (avalanchego's
// subprocess.Bootstrap and Stop on the same plugin, nothing else), and
// `vmre version` against avadoctor with no argument, which only starts up
// and exits. Runs interleave the two programs, rotating their order. Wall
// time is from Start to Wait's return; CPU is the program's user+sys with
// its reaped children (the plugin), from wait4.
func benchDoctor(ctx context.Context, e *env) error {
	avadoctor := filepath.Join(e.o.pluginDir, "avadoctor")
	doctorArgs := []string{"doctor", "--vm-shutdown=false", "--protocol-version", fmt.Sprint(avaProtocolVersion), "--", e.ava, "serve"}

	wall := newRow("whole process: `vmre doctor` on the plugin, vmre built without cgo as the README builds it (ava: a program running subprocess.Bootstrap + Stop, with cgo as avalanchego is built)", "ms")
	cpu := newRow("  CPU of that process and its reaped children", "ms")
	upWall := newRow("start-up: `vmre version` (ava: the same program, exiting at once)", "ms")
	upCPU := newRow("  CPU of that process", "ms")

	type prog struct {
		col       string
		path      string
		args      []string
		wall, cpu *row
		wantOut   string
	}
	progs := []prog{
		{colVmre, e.vmre, doctorArgs, wall, cpu, "result             OK"},
		{colAva, avadoctor, []string{e.ava, "serve"}, wall, cpu, "result\tOK"},
		{colVmre, e.vmre, []string{"version"}, upWall, upCPU, "vmre "},
		{colAva, avadoctor, nil, upWall, upCPU, ""},
	}
	for i := range warmups + e.o.doctorRuns {
		rec := i >= warmups
		fs := make([]func() error, 0, len(progs))
		for _, p := range progs {
			fs = append(fs, func() error {
				w, c, err := runWhole(ctx, p.path, p.args, p.wantOut)
				if err != nil {
					return fmt.Errorf("%s %s: %w", filepath.Base(p.path), strings.Join(p.args, " "), err)
				}
				if rec {
					p.wall.add(p.col, ms(w))
					p.cpu.add(p.col, ms(c))
				}
				return nil
			})
		}
		if err := rotate(i, fs...); err != nil {
			return err
		}
		if (i+1)%10 == 0 {
			e.progress("doctor: %d/%d", i+1, warmups+e.o.doctorRuns)
		}
	}
	wall.check("vmre/ava <= 1.1", wall.ratio(colAva) <= 1.1)
	cpu.check("vmre/ava <= 1.1", cpu.ratio(colAva) <= 1.1)
	e.rows = append(e.rows, wall, cpu, upWall, upCPU)
	return nil
}

// runWhole runs one program to its end and returns its wall time and the
// CPU time of it and its reaped children. Its stdout must contain want.
func runWhole(ctx context.Context, path string, args []string, want string) (wall, cpu time.Duration, err error) {
	var out, errOut bytes.Buffer
	cmd := exec.CommandContext(ctx, path, args...)
	cmd.Stdout, cmd.Stderr = &out, &errOut
	t0 := time.Now()
	if err := cmd.Start(); err != nil {
		return 0, 0, err
	}
	err = cmd.Wait()
	wall = time.Since(t0)
	if err != nil {
		return 0, 0, fmt.Errorf("%w; stderr: %s", err, tail(errOut.String()))
	}
	if !strings.Contains(out.String(), want) {
		return 0, 0, fmt.Errorf("stdout lacks %q: %s", want, tail(out.String()))
	}
	st := cmd.ProcessState
	return wall, st.UserTime() + st.SystemTime(), nil
}

func tail(s string) string {
	if len(s) > 400 {
		s = "..." + s[len(s)-400:]
	}
	return strings.TrimSpace(s)
}
