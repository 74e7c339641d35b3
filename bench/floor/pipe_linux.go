package floor

import (
	"os"

	"golang.org/x/sys/unix"
)

// GrowPipe sets a pipe's capacity to 1 MiB, as vmre's reader does once a
// plugin floods it (Linux's default pipe-max-size); best effort.
func GrowPipe(f *os.File) {
	if rc, err := f.SyscallConn(); err == nil {
		_ = rc.Control(func(fd uintptr) { _, _ = unix.FcntlInt(fd, unix.F_SETPIPE_SZ, 1<<20) })
	}
}

// Pipe returns a pipe whose read end stays outside the runtime's poller,
// as vmre's reader keeps its own: a read blocks in the kernel, and the
// plugin's writes wake the reader only while it waits in one (Linux wakes
// a polled pipe's poller at every write).
func Pipe() (r, w *os.File, err error) {
	var p [2]int
	if err := unix.Pipe2(p[:], unix.O_CLOEXEC); err != nil {
		return nil, nil, os.NewSyscallError("pipe2", err)
	}
	// Blocking descriptors: os.NewFile leaves them out of the poller.
	return os.NewFile(uintptr(p[0]), "|0"), os.NewFile(uintptr(p[1]), "|1"), nil
}
