package preflight

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"strconv"
	"syscall"
)

func openNoBlock(path string) (*os.File, error) {
	// O_NONBLOCK so that a named pipe does not block the open; it has no
	// effect on regular files, the only kind that passes the checks.
	return os.OpenFile(path, os.O_RDONLY|syscall.O_NONBLOCK|syscall.O_NOCTTY, 0)
}

// checkAccess asks the kernel whether this process may execute the open
// file, which also catches a filesystem mounted noexec.
func checkAccess(f *os.File) error {
	err := syscall.Access("/proc/self/fd/"+strconv.Itoa(int(f.Fd())), 0x1 /* X_OK */)
	switch {
	case err == nil, errors.Is(err, syscall.ENOENT):
		return nil // no /proc: the mode bits were checked already
	case errors.Is(err, syscall.EACCES):
		return errors.New("execute permission denied (file mode, or a noexec mount)")
	default:
		return fmt.Errorf("check execute permission: %w", err)
	}
}

// Prepare points cmd at the checked file: cmd.Path becomes
// /proc/self/fd/N, where N is the descriptor cmd.ExtraFiles gives the file
// in the child, so the child executes exactly the inode that was checked.
// cmd.Args (and so the plugin's argv[0]) are left alone. If /proc is not
// mounted, cmd.Path becomes the checked path instead. Call Prepare last,
// after any other change to cmd.ExtraFiles, then Start, then
// [Executable.Close].
func (e *Executable) Prepare(cmd *exec.Cmd) {
	if e.file == nil {
		cmd.Path = e.Path
		return
	}
	if _, err := os.Stat("/proc/self/fd/" + strconv.Itoa(int(e.file.Fd()))); err != nil {
		cmd.Path = e.Path
		return
	}
	childFd := 3 + len(cmd.ExtraFiles)
	cmd.ExtraFiles = append(cmd.ExtraFiles, e.file)
	cmd.Path = "/proc/self/fd/" + strconv.Itoa(childFd)
}
