//go:build !unix

package logline

import (
	"os"
)

// readState reads a pipe with plain blocking reads. Unlike on Unix, a
// stream holds its buffer while it waits.
type readState struct {
	f *os.File
}

func (r *readState) init(f *os.File) error {
	r.f = f
	return nil
}

// fill reads once into r.buf[r.end:].
func (r *Reader) fill() (int, error) {
	if r.buf == nil {
		r.buf = r.b.pool.get()
	}
	return r.rs.f.Read(r.buf[r.end:])
}

// usePoller leaves r.f as it is: there is no poller here.
func (r *Reader) usePoller() {}

// stopWaitingLocked ends a read that waits for data. Pipes here have no read
// deadlines (Windows' os.Pipe handles are not overlapped, so
// SetReadDeadline fails); closing the file cancels the pending read
// (CancelIoEx on Windows). What the pipe still held is lost.
func (r *Reader) stopWaitingLocked() { _ = r.f.Close() }

// readNow is not possible without a poller; the rest of the pipe is lost
// only when a process outside the plugin kept it open past the drain
// timeout.
func (r *readState) readNow([]byte) int { return 0 }
