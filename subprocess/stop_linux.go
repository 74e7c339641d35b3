//go:build linux

package subprocess

import (
	"net"
	"os"
	"os/exec"
	"syscall"

	"golang.org/x/sys/unix"
)

// prepareSysProcAttr makes cmd start in a session, and so a process group,
// of its own (so Stop can signal the plugin's children too) with SIGKILL as
// its parent-death signal (so it dies with the engine, even if it ignores
// SIGTERM). A session rather than only a group: setpgid can move a process
// into any group of its own session, so a plugin's child in the engine's
// session could join the engine's group, where neither Stop nor the
// watchdog looks for it, and outlive the engine; across sessions setpgid
// fails.
func prepareSysProcAttr(cmd *exec.Cmd) {
	if cmd.SysProcAttr == nil {
		cmd.SysProcAttr = &syscall.SysProcAttr{}
	}
	attr := cmd.SysProcAttr
	attr.Setsid = true
	attr.Setpgid = false // with Setsid it would fail: a session leader cannot change group
	attr.Pgid = 0
	attr.Pdeathsig = syscall.SIGKILL
}

// stopAccepting makes ln refuse connections at once. Closing it would
// block until the goroutine in Accept has woken up and let go of it, which
// costs a scheduling round trip on the handshake's critical path; shutting
// the listening socket down resets pending and new connections and wakes
// Accept with an error, after which Serve closes ln itself.
func stopAccepting(ln net.Listener) {
	if tl, ok := ln.(*net.TCPListener); ok {
		if rc, err := tl.SyscallConn(); err == nil {
			var serr error
			if err := rc.Control(func(fd uintptr) { serr = unix.Shutdown(int(fd), unix.SHUT_RDWR) }); err == nil && serr == nil {
				return
			}
		}
	}
	_ = ln.Close()
}

// signalTerm sends SIGTERM to the plugin's process group.
func (p *Process) signalTerm() error { return p.signalGroup(unix.SIGTERM) }

// signalKill sends SIGKILL to the plugin's process group, and to its
// whole cgroup if it has one.
func (p *Process) signalKill() error {
	err := p.signalGroup(unix.SIGKILL)
	if err == nil {
		p.cgroup.kill()
	}
	return err
}

// signalGroup signals the group unless the leader has been reaped. Until it
// is reaped the leader, even as a zombie, holds its PID, so the group ID
// cannot have been reused by an unrelated process.
func (p *Process) signalGroup(sig unix.Signal) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.reaped {
		return os.ErrProcessDone
	}
	return unix.Kill(-p.pid, sig)
}

// reap waits until the leader has exited (unless exited says it has),
// SIGKILLs what is left of its group while the zombie still pins the
// group ID, tells the watchdog to forget the group, then reaps the
// leader. From the moment it takes the lock no signal is sent to the
// group any more, so none can reach a reused ID. It returns cmd.Wait's
// error.
func (p *Process) reap(exited bool) error {
	if !exited {
		waitExited(p.pid)
	}
	p.mu.Lock()
	_ = unix.Kill(-p.pid, unix.SIGKILL)
	p.cgroup.kill()
	theWatchdog.remove(p.pid)
	p.reaped = true
	p.mu.Unlock()
	return p.cmd.Wait()
}

// waitExited blocks until the child pid has exited, without reaping it.
// It waits through the runtime's poller on a pidfd, so a waiting plugin
// does not hold an OS thread; without pidfds (Linux < 5.3) it falls back
// to a blocking waitid.
func waitExited(pid int) {
	fd, err := unix.PidfdOpen(pid, unix.PIDFD_NONBLOCK)
	if err == nil {
		f := os.NewFile(uintptr(fd), "pidfd")
		defer f.Close()
		if rc, err := f.SyscallConn(); err == nil {
			var exited bool
			err = rc.Read(func(fd uintptr) bool {
				fds := []unix.PollFd{{Fd: int32(fd), Events: unix.POLLIN}}
				n, err := unix.Poll(fds, 0)
				exited = err == nil && n > 0
				return exited || (err != nil && err != unix.EINTR)
			})
			if err == nil && exited {
				return
			}
		}
	}
	var info unix.Siginfo
	for {
		err := unix.Waitid(unix.P_PID, pid, &info, unix.WEXITED|unix.WNOWAIT, nil)
		if err != unix.EINTR {
			return
		}
	}
}
