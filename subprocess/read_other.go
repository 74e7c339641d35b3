//go:build !unix

package subprocess

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

// fill reads once into s.buf[s.end:].
func (s *stream) fill() (int, error) {
	if s.buf == nil {
		s.buf = s.pool.get()
	}
	return s.rs.f.Read(s.buf[s.end:])
}

// stopWaiting ends a read that waits for data. Pipes here have no read
// deadlines (Windows' os.Pipe handles are not overlapped, so
// SetReadDeadline fails); closing the file cancels the pending read
// (CancelIoEx on Windows). What the pipe still held is lost.
func (s *stream) stopWaiting() { _ = s.f.Close() }

// readNow is not possible without a poller; the rest of the pipe is lost
// only when a process outside the plugin kept it open past the drain
// timeout.
func (r *readState) readNow([]byte) int { return 0 }
