//go:build unix

package logline

import (
	"io"
	"os"
	"syscall"
	"time"
)

// readState reads a pipe through the runtime's poller. The buffer is taken
// from the pool only once the pipe is readable and given back when the pipe
// runs dry with no incomplete line pending, so a quiet plugin costs no
// buffer memory.
type readState struct {
	rc   syscall.RawConn
	pipe pipeSize // grown while the plugin floods (Start's reads only)
}

func (r *readState) init(f *os.File) error {
	rc, err := f.SyscallConn()
	if err != nil {
		return err
	}
	r.rc = rc
	return rc.Control(func(fd uintptr) { r.pipe.init(int(fd)) })
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
	var (
		n    int
		rerr error
	)
	if err := r.rc.Control(func(fd uintptr) {
		for {
			n, rerr = syscall.Read(int(fd), p)
			if rerr != syscall.EINTR {
				return
			}
		}
	}); err != nil {
		return 0, err
	}
	if n < 0 {
		n = 0
	}
	return n, rerr
}
