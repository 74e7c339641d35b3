//go:build linux

package subprocess_test

import (
	"bufio"
	"context"
	"fmt"
	"os"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/vmre/vmre/subprocess"
)

// Child modes of the tests in this file, added to main_ext_test.go's table.
const (
	// enginePluginsBeforeEnv is how many plugins the "engine-mid-handshake"
	// child launches (and keeps) before the one whose handshake it never
	// finishes.
	enginePluginsBeforeEnv = "SUBPROCESS_TEST_ENGINE_PLUGINS_BEFORE"
	// midHandshakePrefix starts the line in which the "fork-grandchild-hang"
	// plugin reports its own pid and its grandchild's, and which the
	// "engine-mid-handshake" child relays to its stdout.
	midHandshakePrefix = "mid-handshake pids "
)

func init() {
	childModes["engine-mid-handshake"] = childEngineMidHandshake
	childModes["fork-grandchild-hang"] = childForkGrandchildHang
}

// childEngineMidHandshake plays an engine that first launches
// $SUBPROCESS_TEST_ENGINE_PLUGINS_BEFORE "serve" plugins, printing "pid N"
// for each, then bootstraps a "fork-grandchild-hang" plugin, which never
// calls Initialize, relaying its pids line to stdout from OnOutput while
// Bootstrap blocks. Bootstrap's timeout is far beyond the test's, so the
// engine is still inside Bootstrap when it is killed; should Bootstrap
// return anyway, the engine exits 1 and the test sees an exit instead of
// its SIGKILL.
func childEngineMidHandshake() int {
	exe, err := os.Executable()
	if err != nil {
		return 1
	}
	before, err := strconv.Atoi(os.Getenv(enginePluginsBeforeEnv))
	if err != nil {
		fmt.Println("bad", enginePluginsBeforeEnv, err)
		return 2
	}
	ctx := context.Background()
	for range before {
		cmd := subprocess.NewCmd(exe)
		cmd.Env = append(os.Environ(), childModeEnv+"=serve")
		p, err := subprocess.Bootstrap(ctx, cmd, &subprocess.Config{HandshakeTimeout: 30 * time.Second})
		if err != nil {
			fmt.Println("bootstrap:", err)
			return 1
		}
		fmt.Printf("pid %d\n", p.Pid())
	}
	cmd := subprocess.NewCmd(exe)
	cmd.Env = append(os.Environ(), childModeEnv+"=fork-grandchild-hang")
	cfg := &subprocess.Config{
		HandshakeTimeout: time.Minute,
		OnOutput: func(pl *subprocess.Line) {
			l := asOut(pl)
			if strings.HasPrefix(l.Text, midHandshakePrefix) {
				fmt.Println(l.Text)
			}
		},
	}
	_, err = subprocess.Bootstrap(ctx, cmd, cfg)
	fmt.Println("bootstrap returned:", err)
	return 1
}

// childForkGrandchildHang starts a grandchild that ignores SIGTERM (in the
// plugin's process group, without a parent-death signal of its own), waits
// until it is set up, prints "mid-handshake pids PLUGIN GRANDCHILD" and
// then blocks without ever calling Initialize.
func childForkGrandchildHang() int {
	gc, err := startGrandchild()
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	fmt.Printf("%s%d %d\n", midHandshakePrefix, os.Getpid(), gc.Process.Pid)
	waitSignal(syscall.SIGUSR2)
	return 0
}

// TestEngineKilledDuringHandshake SIGKILLs an engine (the test binary in
// "engine-mid-handshake" mode) while it is blocked in Bootstrap on a plugin
// that has forked a grandchild and never calls Initialize. The plugin must
// die by its parent-death signal and the grandchild, which has none, by the
// watchdog shell, to which the plugin's group was registered right after
// fork: both gone (within subprocess.ExitBound).
//
// "first launch": the plugin is the engine's first, so the watchdog shell
// is started by this very launch and Bootstrap never got to wait for it.
// "watchdog running": the engine already runs a plugin, so the group is
// registered with a running shell.
func TestEngineKilledDuringHandshake(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name          string
		pluginsBefore int
	}{
		{name: "first launch", pluginsBefore: 0},
		{name: "watchdog running", pluginsBefore: 1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			engine := childCmd(t, "engine-mid-handshake", enginePluginsBeforeEnv+"="+strconv.Itoa(tt.pluginsBefore))
			engine.SysProcAttr = nil // the test stands in for whoever kills it
			// A pipe of our own rather than StdoutPipe, so that every read
			// is bounded by a deadline.
			r, w, err := os.Pipe()
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { r.Close() })
			engine.Stdout = w
			engine.Stderr = os.Stderr
			err = engine.Start()
			w.Close()
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { _ = engine.Process.Kill(); _ = engine.Wait() })
			if err := r.SetReadDeadline(time.Now().Add(subprocess.ExitBound)); err != nil {
				t.Fatal(err)
			}

			// The engine prints its earlier plugins' pids, then relays the
			// mid-handshake plugin's line from OnOutput, which Bootstrap
			// calls only once the plugin is started and its group
			// registered with the watchdog.
			var pids []int
			sc := bufio.NewScanner(r)
			for sc.Scan() {
				line := sc.Text()
				if pid, ok := strings.CutPrefix(line, "pid "); ok {
					pids = append(pids, mustAtoi(t, line, pid))
					continue
				}
				rest, ok := strings.CutPrefix(line, midHandshakePrefix)
				if !ok {
					t.Fatalf("engine said %q", line)
				}
				plugin, grandchild, _ := strings.Cut(rest, " ")
				pids = append(pids, mustAtoi(t, line, plugin), mustAtoi(t, line, grandchild))
				break
			}
			if err := sc.Err(); err != nil {
				t.Fatalf("read the engine's output: %v (pids so far %v)", err, pids)
			}
			if want := tt.pluginsBefore + 2; len(pids) != want {
				t.Fatalf("engine reported pids %v, want %d", pids, want)
			}
			fds := openPidfds(t, pids...)

			if err := engine.Process.Signal(syscall.SIGKILL); err != nil {
				t.Fatal(err)
			}
			_ = engine.Wait()
			// Only a SIGKILLed engine was still inside Bootstrap: had the
			// handshake ended, it would have exited 1 on its own.
			if ws, ok := engine.ProcessState.Sys().(syscall.WaitStatus); !ok || !ws.Signaled() || ws.Signal() != syscall.SIGKILL {
				t.Fatalf("engine ended with %v, not killed mid-handshake", engine.ProcessState)
			}
			if alive := fds.waitExited(subprocess.ExitBound); len(alive) > 0 {
				t.Errorf("processes %v (of %v: plugins, then the grandchild) survived the engine's SIGKILL mid-handshake by %v", alive, pids, subprocess.ExitBound)
			}
		})
	}
}

// mustAtoi parses a pid from the engine's line or fails the test.
func mustAtoi(t *testing.T, line, s string) int {
	t.Helper()
	n, err := strconv.Atoi(s)
	if err != nil {
		t.Fatalf("engine said %q: %v", line, err)
	}
	return n
}
