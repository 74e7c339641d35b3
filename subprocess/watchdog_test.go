//go:build linux

package subprocess

import (
	"bufio"
	"errors"
	"os"
	"os/exec"
	"runtime"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// startGroupLeader starts the test binary as a process that ignores
// SIGTERM, in a process group of its own, and returns it with a pidfd.
func startGroupLeader(t *testing.T) (*exec.Cmd, int) {
	t.Helper()
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(exe)
	cmd.Env = append(os.Environ(), "SUBPROCESS_TEST_CHILD=grandchild")
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	waited := make(chan struct{})
	go func() { _ = cmd.Wait(); close(waited) }()
	t.Cleanup(func() { _ = cmd.Process.Kill(); <-waited })
	if _, err := bufio.NewReader(out).ReadString('\n'); err != nil {
		t.Fatal(err)
	}
	fd, err := unix.PidfdOpen(cmd.Process.Pid, 0)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { unix.Close(fd) })
	return cmd, fd
}

// exitsWithin reports whether the process behind pidfd exits within d.
func exitsWithin(fd int, d time.Duration) bool {
	deadline := time.Now().Add(d)
	for {
		fds := []unix.PollFd{{Fd: int32(fd), Events: unix.POLLIN}}
		n, err := unix.Poll(fds, int(time.Until(deadline).Milliseconds()))
		if n > 0 {
			return true
		}
		if (err != nil && !errors.Is(err, unix.EINTR)) || time.Now().After(deadline) {
			return false
		}
	}
}

// engineDies closes the write end of wd's current shell, as the kernel
// does when the engine dies, and returns the shell's pid.
func engineDies(wd *watchdog) int {
	pid, _ := engineDiesWatched(nil, wd)
	return pid
}

// engineDiesWatched is engineDies that also returns a pidfd of the shell,
// opened before its input closes: the shell exits on EOF and the
// watchdog's waiter reaps it at once, so a pidfd opened afterwards may
// find no process.
func engineDiesWatched(t *testing.T, wd *watchdog) (pid, pidfd int) {
	wd.mu.Lock()
	w, pid := wd.w, wd.pid
	wd.w = -1
	wd.mu.Unlock()
	pidfd = -1
	if t != nil {
		fd, err := unix.PidfdOpen(pid, 0)
		if err != nil {
			t.Fatalf("pidfd of the watchdog shell %d: %v", pid, err)
		}
		t.Cleanup(func() { unix.Close(fd) })
		pidfd = fd
	}
	unix.Close(w)
	return pid, pidfd
}

// registerFirst registers the group of pid with wd, which has no shell
// yet, waits until the shell runs and returns its pid and a pidfd of it,
// closed at the end of the test.
func registerFirst(t *testing.T, wd *watchdog, pid int) (shell, shellFD int) {
	t.Helper()
	ready, err := wd.add(pid, "")
	if err != nil {
		t.Fatal(err)
	}
	<-ready
	wd.mu.Lock()
	shell = wd.pid
	wd.mu.Unlock()
	shellFD, err = unix.PidfdOpen(shell, 0)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { unix.Close(shellFD) })
	return shell, shellFD
}

func TestWatchdogKillsRegisteredGroupsOnEOF(t *testing.T) {
	t.Parallel()
	wd := &watchdog{live: make(map[int]string)}
	a, aFD := startGroupLeader(t)
	b, bFD := startGroupLeader(t)
	ready, err := wd.add(a.Process.Pid, "")
	if err != nil {
		t.Fatal(err)
	}
	<-ready
	if _, err := wd.add(b.Process.Pid, ""); err != nil {
		t.Fatal(err)
	}
	wd.remove(b.Process.Pid)

	_, shellFD := engineDiesWatched(t, wd)
	if !exitsWithin(aFD, ExitBound) {
		t.Error("registered group survived the engine's death")
	}
	if !exitsWithin(shellFD, ExitBound) {
		t.Error("watchdog shell did not exit after EOF")
	}
	if exitsWithin(bFD, 200*time.Millisecond) {
		t.Error("unregistered group was killed")
	}
}

func TestWatchdogRestartsAfterShellDies(t *testing.T) {
	t.Parallel()
	wd := &watchdog{live: make(map[int]string)}
	a, aFD := startGroupLeader(t)
	c, cFD := startGroupLeader(t)
	first, firstFD := registerFirst(t, wd, a.Process.Pid)
	if err := unix.Kill(first, unix.SIGKILL); err != nil {
		t.Fatal(err)
	}
	if !exitsWithin(firstFD, ExitBound) {
		t.Fatal("shell did not die")
	}
	if exitsWithin(aFD, 100*time.Millisecond) {
		t.Fatal("the shell's death killed a registered group")
	}
	// Whether or not the waiter has restarted the shell yet, registering
	// another group yields a running shell that knows both.
	ready, err := wd.add(c.Process.Pid, "")
	if err != nil {
		t.Fatal(err)
	}
	<-ready
	if second := engineDies(wd); second == first || second == 0 {
		t.Fatalf("no new shell (pid %d, first %d)", second, first)
	}
	if !exitsWithin(aFD, ExitBound) || !exitsWithin(cFD, ExitBound) {
		t.Error("a group survived the engine's death after the shell was replaced")
	}
}

// TestWatchdogWaitHoldsNoThread: the goroutine that waits for the shell,
// for the life of the engine, is parked in the runtime's poller ("IO
// wait"), not blocked in a system call that keeps an OS thread to itself
// ("syscall"). Not parallel: it reads every goroutine's state, and a
// parallel test's shell being started is in a system call.
func TestWatchdogWaitHoldsNoThread(t *testing.T) {
	const noGroup = 1 << 30 // above any pid_max: no such group
	wd := &watchdog{live: make(map[int]string)}
	registerFirst(t, wd, noGroup)
	t.Cleanup(func() { engineDies(wd) })
	const waiter = "subprocess.runWatchdog"
	buf := make([]byte, 1<<20)
	for deadline := time.Now().Add(10 * time.Second); ; runtime.Gosched() {
		var states []string
		parked := true
		for _, g := range strings.Split(string(buf[:runtime.Stack(buf, true)]), "\n\n") {
			if strings.Contains(g, waiter) {
				head, _, _ := strings.Cut(g, "\n")
				states = append(states, head)
				parked = parked && strings.Contains(head, "[IO wait")
			}
		}
		if parked && len(states) > 0 {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("want every watchdog waiter parked in the poller, have %q", states)
		}
	}
}

// TestWatchdogReplacesStoppedShell: a shell someone stopped (SIGSTOP)
// reads nothing; once its input is full, a registration replaces it rather
// than block every launch, and the new shell knows every live group.
func TestWatchdogReplacesStoppedShell(t *testing.T) {
	t.Parallel()
	const noGroup = 1 << 30 // above any pid_max: no such group
	wd := &watchdog{live: make(map[int]string)}
	a, aFD := startGroupLeader(t)
	first, firstFD := registerFirst(t, wd, a.Process.Pid)
	if err := unix.Kill(first, unix.SIGSTOP); err != nil {
		t.Fatal(err)
	}
	// Each registration is a line of about 13 bytes: a socket's buffer is
	// full long before a million of them.
	for i := range 1 << 20 {
		_, _ = wd.add(noGroup+i, "")
		wd.remove(noGroup + i)
		wd.mu.Lock()
		replaced := wd.pid != first
		wd.mu.Unlock()
		if replaced {
			break
		}
	}
	if !exitsWithin(firstFD, ExitBound) {
		t.Fatal("the stopped shell was not replaced (killed)")
	}
	wd.mu.Lock()
	ready := wd.ready
	wd.mu.Unlock()
	<-ready
	if second := engineDies(wd); second == first || second == 0 {
		t.Fatalf("no new shell (pid %d, first %d)", second, first)
	}
	if !exitsWithin(aFD, ExitBound) {
		t.Error("a group survived the engine's death after the stopped shell was replaced")
	}
}

// BenchmarkWatchdog measures what the watchdog costs a launch: starting
// the shell (once per program, overlapped with the first plugin's start)
// and registering plus unregistering a group (every launch).
func BenchmarkWatchdog(b *testing.B) {
	const noGroup = 1 << 30 // above any pid_max: no such group
	b.Run("start", func(b *testing.B) {
		for range b.N {
			wd := &watchdog{live: make(map[int]string)}
			ready, err := wd.add(noGroup, "")
			if err != nil {
				b.Fatal(err)
			}
			<-ready
			wd.remove(noGroup)
			engineDies(wd)
		}
	})
	b.Run("register", func(b *testing.B) {
		wd := &watchdog{live: make(map[int]string)}
		ready, _ := wd.add(noGroup, "")
		<-ready
		wd.remove(noGroup)
		b.ResetTimer()
		for i := range b.N {
			_, _ = wd.add(noGroup+1+i%1000, "")
			wd.remove(noGroup + 1 + i%1000)
		}
		b.StopTimer()
		engineDies(wd)
	})
}
