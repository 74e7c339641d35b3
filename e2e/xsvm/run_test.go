package xsvm

import (
	"bytes"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// TestRunStopsXSVMThroughShutdown: SIGTERM to `vmre run` stops xsvm the way
// an avalanchego node does, through /vm.VM/Shutdown; xsvm then accepts the
// SIGTERM that follows and exits 0.
func TestRunStopsXSVMThroughShutdown(t *testing.T) {
	t.Parallel()
	p, up := running(t, "")
	exited := watchExit(t, up.int("pid"))
	p.signal(t, syscall.SIGTERM)
	if code := p.wait(t); code != 0 {
		t.Errorf("vmre exit code %d, want 0", code)
	}
	waitGone(t, exited)

	logs := p.allLogs()
	msgs := xsvmMessages(logs)
	if !containsAny(msgs, "runtime engine: received shutdown signal: terminated") {
		t.Errorf("xsvm's stdout has no %q: %q", "received shutdown signal", msgs)
	}
	if containsAny(msgs, "ignoring signal") {
		t.Errorf("xsvm ignored a signal: %q", msgs)
	}
	requireLog(t, logs, `"vm shutdown called"`, func(l logLine) bool { return l.str("message") == "vm shutdown called" })
	ended := requireLog(t, logs, `"runtime ended"`, func(l logLine) bool { return l.str("message") == "runtime ended" })
	if got := ended.str("exit"); got != "exit status 0" {
		t.Errorf("runtime ended with %q, want exit status 0", got)
	}
}

// TestRunKillsXSVMWithoutShutdown: with --vm-shutdown=false, xsvm ignores
// the SIGTERM (rpcchainvm plugins wait for Shutdown) and is killed once the
// grace period has passed; vmre's exit code and the runtime's exit status
// say so.
func TestRunKillsXSVMWithoutShutdown(t *testing.T) {
	t.Parallel()
	const grace = 2 * time.Second
	p, up := running(t, "", "--vm-shutdown=false", "--graceful-timeout", grace.String())
	exited := watchExit(t, up.int("pid"))
	signalled := time.Now()
	p.signal(t, syscall.SIGTERM)
	code := p.wait(t)
	took := time.Since(signalled)
	waitGone(t, exited)
	// 3: vmre run stopped on a signal, but a runtime had to be killed.
	if code != 3 {
		t.Errorf("vmre exit code %d, want 3", code)
	}
	if took < grace {
		t.Errorf("vmre exited %s after SIGTERM, before the %s grace period", took, grace)
	}

	logs := p.allLogs()
	msgs := xsvmMessages(logs)
	if !containsAny(msgs, "runtime engine: ignoring signal: terminated") {
		t.Errorf("xsvm's stdout has no %q: %q", "ignoring signal", msgs)
	}
	if containsAny(msgs, "received shutdown signal") {
		t.Errorf("xsvm shut down gracefully: %q", msgs)
	}
	requireLog(t, logs, `"vm process ignored sigterm; killing it"`, func(l logLine) bool {
		return l.str("message") == "vm process ignored sigterm; killing it"
	})
	ended := requireLog(t, logs, `"runtime ended"`, func(l logLine) bool { return l.str("message") == "runtime ended" })
	if got := ended.str("exit"); got != "signal: killed" {
		t.Errorf("runtime ended with %q, want signal: killed", got)
	}
}

// TestEngineSIGKILLLeavesNoXSVM: when the engine is SIGKILLed, xsvm (which
// ignores SIGTERM) must not outlive it. The plugin runs from a copy of the
// binary at a path of this test's own, so that a scan of /proc finds only
// this test's processes (a hard link where it can: a copy's write
// descriptor, inherited by a concurrent fork, can make exec fail with
// ETXTBSY, golang/go#22315).
func TestEngineSIGKILLLeavesNoXSVM(t *testing.T) {
	t.Parallel()
	requireBinaries(t)
	plugin := filepath.Join(t.TempDir(), "xsvm")
	if err := os.Link(xsvmBin, plugin); err != nil {
		copyFile(t, xsvmBin, plugin)
	}
	p, up := running(t, plugin)
	exited := watchExit(t, up.int("pid"))
	if alive := liveProcesses(t, plugin); len(alive) != 1 || alive[0] != up.int("pid") {
		t.Fatalf("processes of %s before the kill: %v, want [%d]", plugin, alive, up.int("pid"))
	}
	p.signal(t, syscall.SIGKILL)
	if code := p.wait(t); code != -1 {
		t.Errorf("vmre exit code %d, want -1 (killed)", code)
	}
	waitGone(t, exited)
	if alive := liveProcesses(t, plugin); len(alive) > 0 {
		t.Errorf("processes of %s alive after the engine was killed: %v", plugin, alive)
	}
}

func requireLog(t *testing.T, logs []logLine, what string, match func(logLine) bool) logLine {
	t.Helper()
	for _, l := range logs {
		if match(l) {
			return l
		}
	}
	t.Errorf("no %s in vmre's log", what)
	return logLine{}
}

// watchExit opens a pidfd for pid: it becomes readable when the process
// exits, whoever its parent is and whether or not it is reaped (this
// container's PID 1 does not reap orphans, so they stay zombies).
func watchExit(t *testing.T, pid int) int {
	t.Helper()
	fd, err := unix.PidfdOpen(pid, 0)
	if err != nil {
		t.Fatalf("pidfd_open %d: %v", pid, err)
	}
	t.Cleanup(func() { _ = unix.Close(fd) })
	return fd
}

// waitGone waits until the process behind pidfd has exited.
func waitGone(t *testing.T, pidfd int) {
	t.Helper()
	deadline := time.Now().Add(waitBound)
	for {
		fds := []unix.PollFd{{Fd: int32(pidfd), Events: unix.POLLIN}}
		n, err := unix.Poll(fds, int(time.Until(deadline).Milliseconds()))
		switch {
		case err == unix.EINTR:
			continue
		case err != nil:
			t.Fatalf("poll pidfd: %v", err)
		case n == 0:
			t.Fatalf("xsvm still running %s after vmre exited", waitBound)
		}
		return
	}
}

// liveProcesses lists the processes running exe that are not zombies.
func liveProcesses(t *testing.T, exe string) []int {
	t.Helper()
	entries, err := os.ReadDir("/proc")
	if err != nil {
		t.Fatal(err)
	}
	var pids []int
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		if target, err := os.Readlink(fmt.Sprintf("/proc/%d/exe", pid)); err != nil || target != exe {
			continue // gone, a zombie (no exe) or another program
		}
		if state, ok := procState(pid); ok && state != 'Z' && state != 'X' {
			pids = append(pids, pid)
		}
	}
	return pids
}

// procState reads the state letter of /proc/PID/stat (after the command
// name, which may itself hold spaces and parentheses).
func procState(pid int) (byte, bool) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0, false
	}
	i := bytes.LastIndexByte(b, ')')
	if i < 0 || i+2 >= len(b) {
		return 0, false
	}
	return b[i+2], true
}

func copyFile(t *testing.T, from, to string) {
	t.Helper()
	in, err := os.Open(from)
	if err != nil {
		t.Fatal(err)
	}
	defer in.Close()
	out, err := os.OpenFile(to, os.O_CREATE|os.O_WRONLY|os.O_EXCL, 0o755)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := io.Copy(out, in); err != nil {
		t.Fatal(err)
	}
	if err := out.Close(); err != nil {
		t.Fatal(err)
	}
}
