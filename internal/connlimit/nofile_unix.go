//go:build unix

package connlimit

import "syscall"

// nofile returns the process's soft descriptor limit, or 0 if unknown.
func nofile() int {
	var r syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &r); err != nil || r.Cur > 1<<30 {
		return 0
	}
	return int(r.Cur)
}
