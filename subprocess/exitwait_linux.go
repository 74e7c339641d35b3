//go:build linux

package subprocess

import (
	"os"
	"sync"
	"syscall"

	"golang.org/x/sys/unix"
)

// An idle plugin costs the engine no goroutine for its exit: one epoll
// instance holds a pidfd of every running plugin, and one goroutine
// ([ExitWaiterFunc]) waits on it through the runtime's poller while any
// plugin runs, and ends when none is left. A plugin's exit makes its pidfd
// readable; the waiter then starts that plugin's supervise goroutine,
// which reaps it. A goroutine per plugin blocked on its own pidfd held a
// goroutine stack and its g for the plugin's whole life.

// ExitWaiterFunc is the function name of the goroutine that waits for the
// exits of all running plugins (Linux only). It runs while any plugin
// runs; a leak checker that runs while plugins may still be exiting
// ignores it along with [SpawnerFunc] and [WatchdogFunc].
const ExitWaiterFunc = "github.com/vmre/vmre/subprocess.runExitWaiter"

type exitWaiter struct {
	once sync.Once
	epfd int             // the epoll instance; not Fd() of ep, which would make it blocking
	ep   *os.File        // epfd in the runtime's poller; nil if it could not be made
	rc   syscall.RawConn // ep's

	mu      sync.Mutex
	waiting map[int32]func(exited bool) // pidfd -> what to run once its process has exited
	running bool                        // runExitWaiter runs
}

var theExitWaiter exitWaiter

// init creates the epoll instance, once per process.
func (w *exitWaiter) init() {
	fd, err := unix.EpollCreate1(unix.EPOLL_CLOEXEC)
	if err != nil {
		return
	}
	// Nonblocking, so that os.NewFile hands it to the runtime's poller.
	if err := unix.SetNonblock(fd, true); err != nil {
		unix.Close(fd)
		return
	}
	f := os.NewFile(uintptr(fd), "exitwait")
	rc, err := f.SyscallConn()
	if err != nil {
		f.Close()
		return
	}
	w.epfd, w.ep, w.rc = fd, f, rc
	w.waiting = make(map[int32]func(bool))
}

// watchExit runs then(true), on a goroutine of its own, once the child
// pid has exited (it is not reaped), or then(false) if the waiter fails
// before that (it never does short of a bug in the runtime's poller):
// then then must wait itself. It reports false, and runs nothing, if it
// cannot wait for pid this way (no pidfds before Linux 5.3, no epoll).
// pid must be an unreaped child, so that its number is not reused before
// the pidfd is open.
func watchExit(pid int, then func(exited bool)) bool {
	w := &theExitWaiter
	w.once.Do(w.init)
	if w.ep == nil {
		return false
	}
	pfd, err := unix.PidfdOpen(pid, 0)
	if err != nil {
		return false
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	// One-shot: an exited process's pidfd stays readable until it is
	// closed, which the waiter does right after the event.
	ev := unix.EpollEvent{Events: unix.EPOLLIN | unix.EPOLLONESHOT, Fd: int32(pfd)}
	if err := unix.EpollCtl(w.epfd, unix.EPOLL_CTL_ADD, pfd, &ev); err != nil {
		unix.Close(pfd)
		return false
	}
	w.waiting[int32(pfd)] = then
	if !w.running {
		w.running = true
		go runExitWaiter(w)
	}
	return true
}

// runExitWaiter hands every exit the epoll instance reports to its
// watcher until none is waited for. The runtime's poller watches the
// instance edge-triggered, so each wake-up takes every ready event before
// waiting again.
func runExitWaiter(w *exitWaiter) {
	var events [64]unix.EpollEvent
	err := w.rc.Read(func(epfd uintptr) bool {
		for {
			n, err := unix.EpollWait(int(epfd), events[:], 0)
			if err == unix.EINTR {
				continue
			}
			if n <= 0 {
				break
			}
			w.mu.Lock()
			for _, ev := range events[:n] {
				if then, ok := w.waiting[ev.Fd]; ok {
					delete(w.waiting, ev.Fd)
					unix.Close(int(ev.Fd))
					go then(true)
				}
			}
			w.mu.Unlock()
		}
		w.mu.Lock()
		defer w.mu.Unlock()
		if len(w.waiting) == 0 {
			w.running = false
			return true
		}
		return false
	})
	if err == nil {
		return
	}
	// The poller failed the instance: every watcher waits on its own.
	w.mu.Lock()
	defer w.mu.Unlock()
	for pfd, then := range w.waiting {
		unix.Close(int(pfd))
		go then(false)
	}
	clear(w.waiting)
	w.running = false
}
