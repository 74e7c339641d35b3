package procfd

import (
	"os"
	"strconv"
	"syscall"
)

// Count returns how many descriptors process pid has open, or the
// calling process if pid is 0; false if /proc does not say (the process
// is gone, or its descriptors are not ours to see). Linux 6.2 and later
// give the count as the size of /proc/PID/fd, one stat call; older
// kernels report 0 there, and the directory is listed instead. It is safe
// for concurrent use.
func Count(pid int) (int, bool) {
	dir := "/proc/self/fd"
	if pid != 0 {
		dir = "/proc/" + strconv.Itoa(pid) + "/fd"
	}
	var st syscall.Stat_t
	if err := syscall.Stat(dir, &st); err != nil {
		return 0, false
	}
	if st.Size > 0 {
		return int(st.Size), true
	}
	f, err := os.Open(dir)
	if err != nil {
		return 0, false
	}
	defer f.Close()
	names, err := f.Readdirnames(-1)
	return len(names), err == nil
}
