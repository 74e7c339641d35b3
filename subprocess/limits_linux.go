package subprocess

import (
	"fmt"

	"golang.org/x/sys/unix"
)

// applyRlimits sets l's rlimits on the started process pid. With a cgroup
// (inCgroup), memory and processes are the cgroup's and only OpenFiles is
// an rlimit. The process runs for the few microseconds between its start
// and this call without them: Linux offers no way to set another
// process's rlimits between fork and exec from Go, and changing the
// engine's own would race with its other launches.
func applyRlimits(pid int, l Limits, inCgroup bool) error {
	set := func(resource int, v uint64, name string) error {
		lim := unix.Rlimit{Cur: v, Max: v}
		if err := unix.Prlimit(pid, resource, &lim, nil); err != nil {
			return fmt.Errorf("set %s to %d: %w", name, v, err)
		}
		return nil
	}
	if l.MemoryBytes > 0 && !inCgroup {
		if err := set(unix.RLIMIT_DATA, uint64(l.MemoryBytes), "RLIMIT_DATA"); err != nil {
			return err
		}
	}
	if l.OpenFiles > 0 {
		if err := set(unix.RLIMIT_NOFILE, uint64(l.OpenFiles), "RLIMIT_NOFILE"); err != nil {
			return err
		}
	}
	if l.Processes > 0 && !inCgroup {
		if err := set(unix.RLIMIT_NPROC, uint64(l.Processes), "RLIMIT_NPROC"); err != nil {
			return err
		}
	}
	return nil
}
