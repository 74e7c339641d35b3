package engine

import (
	"fmt"

	"golang.org/x/sys/unix"
)

// setNonDumpable clears the process's dumpable flag. The kernel then
// refuses ptrace attach, process_vm_readv and pidfd_getfd to processes
// without CAP_SYS_PTRACE, and makes /proc/PID/{mem,environ,fd,maps,...}
// root's, while the process itself may still read its own /proc/self
// entries and exec through /proc/self/fd/N. Children start dumpable again
// at their exec.
func setNonDumpable() error {
	if err := unix.Prctl(unix.PR_SET_DUMPABLE, 0, 0, 0, 0); err != nil {
		return fmt.Errorf("set process non-dumpable: %w", err)
	}
	return nil
}
