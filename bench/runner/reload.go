package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/rs/zerolog"
	"github.com/vmre/vmre/config"
	"github.com/vmre/vmre/engine"
	"github.com/vmre/vmre/subprocess"
)

// benchReload measures a reload of `vmre run --config`'s file (the
// config.Runner that SIGHUP and ReloadConfig call) with -reload-n real
// plugins running, one of them changed: from Reload called to Reload
// returned, which is the file's load and diff, the changed runtime's stop
// and its relaunch up to the handshake. Each round checks that only the
// changed runtime got a new process. A reload of the unchanged file is
// timed too: the cost of loading and diffing alone.
func benchReload(ctx context.Context, e *env) error {
	n := e.o.reloadN
	path := filepath.Join(e.tmp, "reload.yaml")
	// gen[i] is in runtime i's environment: bumping it changes that
	// runtime alone.
	gen := make([]int, n)
	write := func() error {
		var b strings.Builder
		b.WriteString("runtimes:\n")
		for i := range n {
			fmt.Fprintf(&b, "  - name: vm-%d\n    path: %q\n    args: [serve]\n    protocol_versions: [%d]\n    handshake_timeout: 10s\n    restart: {policy: never}\n    env: {BENCH_GEN: \"%d\"}\n",
				i, e.ava, avaProtocolVersion, gen[i])
		}
		return os.WriteFile(path, []byte(b.String()), 0o600)
	}
	if err := write(); err != nil {
		return err
	}
	file, err := config.Load(path)
	if err != nil {
		return err
	}
	eng, err := engine.New(engine.Config{
		Launcher: engine.NewSubprocessLauncher(subprocess.Config{
			Log:              vmreLogger(io.Discard),
			AcceptedVersions: []uint32{avaProtocolVersion},
			HandshakeTimeout: 10 * time.Second,
		}, nil),
		AcceptedVersions: []uint32{avaProtocolVersion},
	})
	if err != nil {
		return err
	}
	defer eng.Close(context.WithoutCancel(ctx))
	r := config.NewRunner(eng, file, zerolog.Nop())
	r.Start(ctx)
	if got := len(runningPids(eng)); got != n {
		return fmt.Errorf("%d of %d runtimes running after Start", got, n)
	}

	changed := newRow(fmt.Sprintf("config reload, %d runtimes, one changed -> reloaded (only it relaunched: stop, launch, handshake)", n), "ms")
	same := newRow(fmt.Sprintf("  config reload, %d runtimes, none changed (load and diff only)", n), "ms")
	for round := range e.o.reloadRounds {
		before := runningPids(eng)
		target := round % n
		gen[target]++
		if err := write(); err != nil {
			return err
		}
		t0 := time.Now()
		plan, err := r.Reload(ctx)
		dt := time.Since(t0)
		if err != nil {
			return err
		}
		after := runningPids(eng)
		name := fmt.Sprintf("vm-%d", target)
		if len(plan.Restart) != 1 || plan.Restart[0].Name != name || len(plan.Start)+len(plan.Stop) != 0 {
			return fmt.Errorf("round %d: plan restarts %d, starts %d, stops %d; want only %s restarted", round, len(plan.Restart), len(plan.Start), len(plan.Stop), name)
		}
		for vm, pid := range before {
			if vm != name && after[vm] != pid {
				return fmt.Errorf("round %d: %s was relaunched (pid %d -> %d) though unchanged", round, vm, pid, after[vm])
			}
		}
		if after[name] == 0 || after[name] == before[name] {
			return fmt.Errorf("round %d: %s was not relaunched", round, name)
		}
		changed.add(colVmre, ms(dt))

		t0 = time.Now()
		if _, err := r.Reload(ctx); err != nil {
			return err
		}
		same.add(colVmre, ms(time.Since(t0)))
	}
	// A round that relaunched anything else returned an error above.
	changed.check("only the changed runtime relaunched, every round", true)
	e.rows = append(e.rows, changed, same)
	return nil
}

// runningPids returns the pid of each running runtime by name.
func runningPids(eng *engine.Engine) map[string]int {
	out := make(map[string]int)
	for _, rt := range eng.List() {
		if rt.State == engine.StateRunning {
			out[rt.Name] = rt.Pid
		}
	}
	return out
}
