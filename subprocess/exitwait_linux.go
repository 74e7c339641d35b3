//go:build linux

package subprocess

import (
	"github.com/vmre/vmre/internal/fdwait"
	"golang.org/x/sys/unix"
)

// An idle plugin costs the engine no goroutine for its exit: a pidfd of
// every running plugin waits in the process's one descriptor waiter
// (internal/fdwait), whose goroutine ([ExitWaiterFunc]) runs while
// anything is watched. A plugin's exit makes its pidfd readable; the
// waiter then starts that plugin's supervise goroutine, which reaps it.

// ExitWaiterFunc is the function name of the goroutine that waits for the
// exits of all running plugins, and for their output (Linux only). It runs
// while any plugin runs; a leak checker that runs while plugins may still
// be exiting ignores it along with [SpawnerFunc] and [WatchdogFunc].
const ExitWaiterFunc = fdwait.Func

// watchExit runs then(true), on a goroutine of its own, once the child
// pid has exited (it is not reaped), or then(false) if the waiter fails
// before that (it never does short of a bug in the runtime's poller):
// then then must wait itself. It reports false, and runs nothing, if it
// cannot wait for pid this way (no pidfds before Linux 5.3, no epoll).
// pid must be an unreaped child, so that its number is not reused before
// the pidfd is open.
func watchExit(pid int, then func(exited bool)) bool {
	w := fdwait.Shared()
	if w == nil {
		return false
	}
	pfd, err := unix.PidfdOpen(pid, 0)
	if err != nil {
		return false
	}
	// An exited process's pidfd stays readable until it is closed, which
	// is done right after its one wake.
	err = w.Watch(pfd, func(exited bool) {
		w.Unwatch(pfd)
		unix.Close(pfd)
		then(exited)
	})
	if err != nil {
		unix.Close(pfd)
		return false
	}
	return true
}
