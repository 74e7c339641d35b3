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
