package preflight

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
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
// executes /proc/self/fd/N, where N is the number of this process's
// close-on-exec descriptor of the file: the child inherits the table of
// descriptors at fork, the kernel resolves the path while that descriptor
// is still open and closes it once the new program is loaded, so exactly
// the inode that was checked runs and the plugin holds no descriptor of
// it; cmd.Args (and so the plugin's argv[0]) and cmd.ExtraFiles are left
// alone. A "#!" script is executed by its checked (absolute) path instead,
// because the kernel hands its interpreter the executed path as the
// script's name ($0), and wrappers such as exec "$(dirname "$0")/real-vm"
// need the real one; the path could then be swapped between the checks
// and the exec, as on systems other than Linux. A script checked against
// a SHA-256 pin is executed through /proc/self/fd/N like a binary, so that
// the pinned contents are what runs, and its $0 is then /proc/self/fd/N;
// its interpreter opens that path after the exec, so for it N is a
// descriptor cmd.ExtraFiles passes on (the script keeps it open). If /proc
// is not mounted, cmd.Path becomes the checked path. Call Prepare last,
// after any other change to cmd.ExtraFiles, then Start, then
// [Executable.Close].
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
	if !procFDs() {
		cmd.Path = e.Path
		return
	}
	if e.Format == "script" {
		childFd := 3 + len(cmd.ExtraFiles)
		cmd.ExtraFiles = append(cmd.ExtraFiles, e.file)
		cmd.Path = "/proc/self/fd/" + strconv.Itoa(childFd)
		return
	}
	cmd.Path = "/proc/self/fd/" + strconv.Itoa(e.inheritedFd(cmd))
	dir, err := os.MkdirTemp(linkBase(), linkDirPrefix+strconv.Itoa(os.Getpid())+"-")
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

// inheritedFd returns a close-on-exec descriptor of the file that keeps its
// number in cmd's child until the exec. Between fork and exec the child
// moves its standard streams and cmd.ExtraFiles to 0..2+len(ExtraFiles)
// and, to do so, may first copy some of them (and its error pipe) to the
// numbers right above; a descriptor numbered above all of those is never
// overwritten. The file's own descriptor nearly always is; otherwise a
// copy above them is made, closed with the file.
func (e *Executable) inheritedFd(cmd *exec.Cmd) int {
	n := 3 + len(cmd.ExtraFiles)
	floor := 2*n + 2 // the targets, then at most one copy of each and of the pipe
	fd := int(e.file.Fd())
	if fd >= floor {
		return fd
	}
	dup, err := unix.FcntlInt(uintptr(fd), unix.F_DUPFD_CLOEXEC, floor)
	if err != nil {
		return fd // the child may find another file there and fail to start
	}
	e.dup = os.NewFile(uintptr(dup), e.file.Name())
	return dup
}

// linkBase is where Prepare makes its links: a memory-backed directory when
// there is one, because on a disk filesystem making and removing a
// directory and a link added about 0.6 ms to a launch on the test machine
// (tmpfs: about 25 µs). The process's pid in each directory's name tells
// whose it is. On first use it removes the directories that engines killed
// in the middle of a launch left there (sweepLinkDirs).
var linkBase = sync.OnceValue(func() string {
	base := os.TempDir()
	for _, dir := range []string{os.Getenv("XDG_RUNTIME_DIR"), "/dev/shm"} {
		if dir != "" && syscall.Access(dir, 0x2|0x1 /* W_OK|X_OK */) == nil {
			base = dir
			break
		}
	}
	sweepLinkDirs(base, time.Now())
	return base
})

// linkDirPrefix starts the name of every directory Prepare makes, followed
// by the engine's pid and a dash.
const linkDirPrefix = "vmre-exec-"

// staleLinkAge is how old a dead engine's link directory must be before
// sweepLinkDirs removes it. A directory lives from Prepare to Close, the
// few milliseconds of a fork and exec, so one a minute old is left over;
// the age also spares the directory of a live engine whose pid this
// process cannot see (another pid namespace sharing the directory).
const staleLinkAge = time.Minute

// sweepLinkDirs removes base's link directories whose engine no longer
// runs: owned by this user, older than staleLinkAge, and named with a pid
// that kill(pid, 0) finds no process for. A pid reused since keeps its
// directory, which costs only the few bytes of a link. Errors are ignored:
// a directory left behind never stops a launch.
func sweepLinkDirs(base string, now time.Time) {
	entries, err := os.ReadDir(base)
	if err != nil {
		return
	}
	uid := uint32(os.Geteuid())
	for _, ent := range entries {
		name := ent.Name()
		rest, ok := strings.CutPrefix(name, linkDirPrefix)
		if !ok || !ent.IsDir() {
			continue
		}
		pidText, _, ok := strings.Cut(rest, "-")
		pid, err := strconv.Atoi(pidText)
		if !ok || err != nil || pid <= 0 || pid == os.Getpid() {
			continue
		}
		path := filepath.Join(base, name)
		var st syscall.Stat_t
		if syscall.Lstat(path, &st) != nil || st.Uid != uid || now.Sub(time.Unix(st.Mtim.Unix())) < staleLinkAge {
			continue
		}
		if !errors.Is(syscall.Kill(pid, 0), syscall.ESRCH) {
			continue
		}
		_ = os.RemoveAll(path) // the one link inside, not what it names
	}
}

// procFDs reports whether /proc/self/fd lists this process's descriptors,
// checked once per process: /proc is mounted, or not, for the life of an
// engine.
var procFDs = sync.OnceValue(func() bool {
	info, err := os.Stat("/proc/self/fd")
	return err == nil && info.IsDir()
})

// removeLink removes the link Prepare made, and its directory.
func (e *Executable) removeLink() {
	if e.dup != nil {
		_ = e.dup.Close()
		e.dup = nil
	}
	if e.link == "" {
		return
	}
	_ = syscall.Unlink(e.link)
	_ = syscall.Rmdir(filepath.Dir(e.link))
	e.link = ""
}
