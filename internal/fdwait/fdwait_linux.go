package fdwait

import (
	"errors"
	"os"
	"sync"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// Waiter watches descriptors with one epoll instance. Each watch is
// one-shot (EPOLLONESHOT): once its descriptor is readable, its wake
// function runs once on a goroutine of its own, and the descriptor waits
// again only after Rearm. All methods are safe for concurrent use.
type Waiter struct {
	epfd int             // the epoll instance; not Fd() of ep, which would make it blocking
	ep   *os.File        // epfd in the runtime's poller
	rc   syscall.RawConn // ep's

	// mu is held around every epoll_wait (which never blocks) and every
	// change to the instance, so an event taken from the instance always
	// belongs to a watch still in watched: a descriptor's number, once
	// unwatched and closed, may be reused by the next watch.
	mu      sync.Mutex
	watched map[int32]func(ok bool)
	running bool // run runs
}

var (
	sharedOnce sync.Once
	shared     *Waiter
)

// Shared returns the process's waiter, made at the first call, or nil if
// the system cannot provide one (no epoll instance in the poller).
func Shared() *Waiter {
	sharedOnce.Do(func() { shared = newWaiter() })
	return shared
}

func newWaiter() *Waiter {
	fd, err := unix.EpollCreate1(unix.EPOLL_CLOEXEC)
	if err != nil {
		return nil
	}
	// Nonblocking, so that os.NewFile hands it to the runtime's poller.
	if err := unix.SetNonblock(fd, true); err != nil {
		unix.Close(fd)
		return nil
	}
	f := os.NewFile(uintptr(fd), "fdwait")
	rc, err := f.SyscallConn()
	if err != nil {
		f.Close()
		return nil
	}
	return &Waiter{epfd: fd, ep: f, rc: rc, watched: make(map[int32]func(bool))}
}

// Watch runs wake(true), once, on a goroutine of its own, when fd is
// readable: it has data, is at end of file, has a hang-up or an error.
// Rearm waits for the next time. If the waiter itself fails (it does not,
// short of a bug in the runtime's poller), every watch's wake runs with
// false instead and the descriptor is no longer watched: its owner then
// waits on its own. fd must stay open until Unwatch returns.
func (w *Waiter) Watch(fd int, wake func(ok bool)) error {
	w.mu.Lock()
	defer w.mu.Unlock()
	ev := unix.EpollEvent{Events: unix.EPOLLIN | unix.EPOLLONESHOT, Fd: int32(fd)}
	if err := unix.EpollCtl(w.epfd, unix.EPOLL_CTL_ADD, fd, &ev); err != nil {
		return err
	}
	w.watched[int32(fd)] = wake
	if !w.running {
		w.running = true
		// Unwatch of the last watch may have set it to end the last run.
		_ = w.ep.SetReadDeadline(time.Time{})
		go run(w)
	}
	return nil
}

// Rearm waits again for fd, whose wake has run.
func (w *Waiter) Rearm(fd int) error {
	w.mu.Lock()
	defer w.mu.Unlock()
	if _, ok := w.watched[int32(fd)]; !ok {
		return os.ErrClosed
	}
	ev := unix.EpollEvent{Events: unix.EPOLLIN | unix.EPOLLONESHOT, Fd: int32(fd)}
	return unix.EpollCtl(w.epfd, unix.EPOLL_CTL_MOD, fd, &ev)
}

// Unwatch stops watching fd; call it before closing fd. Once it returns,
// no wake of fd starts, though one already started may still run. It is
// a no-op for a descriptor not watched.
func (w *Waiter) Unwatch(fd int) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if _, ok := w.watched[int32(fd)]; !ok {
		return
	}
	_ = unix.EpollCtl(w.epfd, unix.EPOLL_CTL_DEL, fd, nil)
	delete(w.watched, int32(fd))
	if len(w.watched) == 0 && w.running {
		// Wake run, parked in the poller, so that it ends.
		_ = w.ep.SetReadDeadline(time.Now())
	}
}

// run starts the wake of every descriptor the epoll instance reports
// until none is watched. The runtime's poller watches the instance
// edge-triggered, so each wake-up takes every ready event before waiting
// again.
func run(w *Waiter) {
	var events [64]unix.EpollEvent
	for {
		err := w.rc.Read(func(uintptr) bool {
			w.mu.Lock()
			defer w.mu.Unlock()
			for {
				n, err := unix.EpollWait(w.epfd, events[:], 0)
				if err == unix.EINTR {
					continue
				}
				if n <= 0 {
					break
				}
				for _, ev := range events[:n] {
					if wake, ok := w.watched[ev.Fd]; ok {
						go wake(true)
					}
				}
			}
			if len(w.watched) == 0 {
				w.running = false
				return true
			}
			return false
		})
		if err == nil {
			return
		}
		w.mu.Lock()
		if errors.Is(err, os.ErrDeadlineExceeded) {
			// Unwatch of the last watch, unless a watch came since.
			if len(w.watched) == 0 {
				w.running = false
				w.mu.Unlock()
				return
			}
			_ = w.ep.SetReadDeadline(time.Time{})
			w.mu.Unlock()
			continue
		}
		// The poller failed the instance: every owner waits on its own.
		for fd, wake := range w.watched {
			_ = unix.EpollCtl(w.epfd, unix.EPOLL_CTL_DEL, int(fd), nil)
			go wake(false)
		}
		clear(w.watched)
		w.running = false
		w.mu.Unlock()
		return
	}
}
