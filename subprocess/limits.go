package subprocess

import (
	"fmt"

	"github.com/vmre/vmre"
)

// Limits caps the resources of a plugin. Zero fields limit nothing.
//
// Without a cgroup (Config.CgroupRoot empty) they are rlimits, set on the
// plugin right after it starts and inherited by the children it starts
// later:
//
//   - MemoryBytes is RLIMIT_DATA, not RLIMIT_AS. Since Linux 4.7
//     RLIMIT_DATA counts the private writable mappings, which is where a
//     heap lives, while RLIMIT_AS counts every reservation too: Go's and
//     glibc's arena reservations and thread stacks put a healthy Go
//     plugin's address space at several times its heap, so an AS limit
//     near the real need kills it on its first large reservation. Either
//     way the limit is per process and on virtual memory: allocations
//     past it fail (a Go plugin then dies with "out of memory"), and the
//     tree as a whole is not capped.
//   - OpenFiles is RLIMIT_NOFILE (soft and hard) of each process.
//   - Processes is RLIMIT_NPROC, which the kernel counts per user, not per
//     plugin: every process of the plugin's user counts against it, and a
//     root or CAP_SYS_RESOURCE plugin ignores it. Run plugins as their own
//     user, or use a cgroup, for a real per-plugin bound.
//
// With a cgroup, MemoryBytes and Processes are the cgroup's memory.max and
// pids.max (for the whole tree; the kernel's OOM killer enforces the
// memory one), and OpenFiles stays an rlimit.
type Limits struct {
	MemoryBytes int64
	OpenFiles   int
	Processes   int
}

// IsZero reports whether l limits nothing.
func (l Limits) IsZero() bool { return l == Limits{} }

// Validate reports a negative limit as an error wrapping
// [vmre.ErrInvalidConfig].
func (l Limits) Validate() error {
	switch {
	case l.MemoryBytes < 0:
		return fmt.Errorf("%w: memory limit %d is negative", vmre.ErrInvalidConfig, l.MemoryBytes)
	case l.OpenFiles < 0:
		return fmt.Errorf("%w: open files limit %d is negative", vmre.ErrInvalidConfig, l.OpenFiles)
	case l.Processes < 0:
		return fmt.Errorf("%w: processes limit %d is negative", vmre.ErrInvalidConfig, l.Processes)
	}
	return nil
}
