package preflight

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"sync"
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

// Prepare points cmd at the checked file. For a binary, the child
// executes /proc/self/fd/N, where N is the descriptor cmd.ExtraFiles gives
// the file in the child, so it runs exactly the inode that was checked;
// cmd.Args (and so the plugin's argv[0]) are left alone. A "#!" script is
// executed by its checked (absolute) path instead, with nothing added to
// cmd.ExtraFiles, because the kernel hands its interpreter the executed
// path as the script's name ($0), and wrappers such as
// exec "$(dirname "$0")/real-vm" need the real one; the path could then
// be swapped between the checks and the exec, as on systems other than
// Linux. A script checked against a SHA-256 pin is executed through
// /proc/self/fd/N like a binary, so that the pinned contents are what
// runs, and its $0 is then /proc/self/fd/N. If /proc is not mounted,
// cmd.Path becomes the checked path. Call Prepare last, after any other
// change to cmd.ExtraFiles, then Start, then [Executable.Close].
//
// The kernel names a process (/proc/PID/comm: what ps, top and pgrep show)
// after the last element of the path it executes, which here would be
// "N". So for a binary, cmd.Path is a symbolic link to /proc/self/fd/N
// named like the checked file, in a private temporary directory that
// Close removes; the link resolves in the child, to the same descriptor.
// A pinned script is executed through /proc/self/fd/N itself: its
// interpreter opens that path after the exec, when the link may already
// be gone. If the link cannot be made, the process is named "N" and runs
// all the same.
func (e *Executable) Prepare(cmd *exec.Cmd) {
	if e.file == nil || (e.Format == "script" && e.SHA256 == "") {
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
	if e.Format == "script" {
		return
	}
	dir, err := os.MkdirTemp(linkBase(), "vmre-exec-"+strconv.Itoa(os.Getpid())+"-")
	if err != nil {
		return
	}
	link := filepath.Join(dir, filepath.Base(e.Path))
	if err := os.Symlink(cmd.Path, link); err != nil {
		_ = os.Remove(dir)
		return
	}
	e.link = link
	cmd.Path = link
}

// linkBase is where Prepare makes its links: a memory-backed directory when
// there is one, because on a disk filesystem making and removing a
// directory and a link added about 0.6 ms to a launch on the test machine
// (tmpfs: about 25 µs). The process's pid in
// each directory's name tells whose it is.
var linkBase = sync.OnceValue(func() string {
	for _, dir := range []string{os.Getenv("XDG_RUNTIME_DIR"), "/dev/shm"} {
		if dir != "" && syscall.Access(dir, 0x2|0x1 /* W_OK|X_OK */) == nil {
			return dir
		}
	}
	return os.TempDir()
})

// removeLink removes the link Prepare made, and its directory.
func (e *Executable) removeLink() {
	if e.link == "" {
		return
	}
	_ = os.Remove(e.link)
	_ = os.Remove(filepath.Dir(e.link))
	e.link = ""
}
