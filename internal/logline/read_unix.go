//go:build unix

package logline

import (
	"errors"
	"io"
	"os"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// readState reads a pipe through the runtime's poller. The buffer is taken
// from the pool only once the pipe is readable and given back when the pipe
// runs dry with no incomplete line pending, so a quiet plugin costs no
// buffer memory.
type readState struct {
	rc   syscall.RawConn
	pipe pipeSize // grown while the plugin floods (Start's reads only)
	// fd is the file's descriptor, which readRaw reads and pipe resizes
	// without rc.Control and its closure (an allocation per read): only
	// the reader closes or replaces its file, so the descriptor is open
	// for all its reads.
	fd int
}

func (r *readState) init(f *os.File) error {
	rc, err := f.SyscallConn()
	if err != nil {
		return err
	}
	r.rc = rc
	r.pipe.init()
	return rc.Control(func(fd uintptr) { r.fd = int(fd) })
}

// fill reads once into r.buf[r.end:], blocking until data, EOF (io.EOF) or
// the read deadline (os.ErrDeadlineExceeded): StopWaiting's or a dump's.
func (r *Reader) fill() (int, error) {
	var (
		n    int
		rerr error
	)
	err := r.rs.rc.Read(func(fd uintptr) bool {
		if r.buf == nil {
			r.buf = r.b.pool.get()
		}
		for {
			n, rerr = syscall.Read(int(fd), r.buf[r.end:])
			if rerr != syscall.EINTR {
				break
			}
		}
		if rerr == syscall.EAGAIN {
			if r.start == r.end {
				r.b.pool.put(r.buf)
				r.buf, r.start, r.end, r.scanned = nil, 0, 0, 0
			}
			return false
		}
		return true
	})
	switch {
	case err != nil:
		return 0, err
	case rerr != nil:
		return 0, rerr
	case n == 0:
		return 0, io.EOF
	}
	return n, nil
}

// usePoller readies r.f for the blocking read loop, which waits in the
// runtime's poller: a non-blocking file outside it (NewPipe's read end)
// is replaced by a file for a duplicate of its descriptor, which the
// poller takes, and closed. If the descriptor cannot be duplicated, it is
// made blocking instead: its reads then wait in the kernel, and
// StopWaiting ends them only at the end of the stream. A deadline already
// due (StopWaiting's, a dump's) is set on the file the loop reads.
func (r *Reader) usePoller() {
	r.deadlineMu.Lock()
	defer r.deadlineMu.Unlock()
	// The only way to ask whether a file is in the poller; the deadline
	// is set again below.
	if errors.Is(r.f.SetReadDeadline(time.Time{}), os.ErrNoDeadline) {
		if f := dupInPoller(r.f); f != nil {
			_ = r.f.Close()
			r.f = f
		}
	}
	r.setFileDeadlineLocked()
}

// setFileDeadlineLocked gives r.f the read deadline a blocking read has
// now: StopWaiting's, or a dump's. deadlineMu is held.
func (r *Reader) setFileDeadlineLocked() {
	switch {
	case r.stopping:
		r.stopWaitingLocked()
	case !r.deadline.IsZero():
		_ = r.f.SetReadDeadline(r.deadline)
	}
}

// dupInPoller returns a file in the runtime's poller for a duplicate of
// f's descriptor if that is non-blocking; nil if it is blocking, or if it
// cannot be duplicated, in which case it is made blocking.
func dupInPoller(f *os.File) *os.File {
	rc, err := f.SyscallConn()
	if err != nil {
		return nil
	}
	dup := -1
	_ = rc.Control(func(fd uintptr) {
		fl, err := unix.FcntlInt(fd, unix.F_GETFL, 0)
		if err != nil || fl&unix.O_NONBLOCK == 0 {
			return
		}
		if dup, err = unix.FcntlInt(fd, unix.F_DUPFD_CLOEXEC, 0); err != nil {
			dup = -1
			_ = unix.SetNonblock(int(fd), false)
		}
	})
	if dup < 0 {
		return nil
	}
	// The duplicate shares O_NONBLOCK: os.NewFile puts it in the poller.
	return os.NewFile(uintptr(dup), f.Name())
}

// stopWaitingLocked ends a read that waits for data: the deadline wakes it, and
// what the pipe already holds is still read (readNow).
func (r *Reader) stopWaitingLocked() { _ = r.f.SetReadDeadline(time.Now()) }

// readNow reads what the pipe holds without waiting; it returns 0 when the
// pipe is empty, at EOF or on error.
func (r *readState) readNow(p []byte) int {
	n, _ := r.readRaw(p)
	return n
}

// readRaw reads once without waiting: n > 0 bytes, or 0 and
// syscall.EAGAIN (the pipe is empty), nil (end of file) or the error.
func (r *readState) readRaw(p []byte) (int, error) {
	for {
		n, err := syscall.Read(r.fd, p)
		if err != syscall.EINTR {
			return max(n, 0), err
		}
	}
}
