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
// named like the checked file: /proc/self/fd/D/N/NAME, where D is this
// process's descriptor of its link directory (see linkDir) and N/NAME a
// link Close removes. Like the file, the directory is reached through a
// descriptor the child inherits, never by its name. A pinned script is
// executed through /proc/self/fd/N itself: its interpreter opens that path
// after the exec, when the link may already be gone. If the link cannot be
// made, the process is named "N" and runs all the same.
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
	fd := e.inheritedFd(cmd)
	cmd.Path = "/proc/self/fd/" + strconv.Itoa(fd)
	dir, rel, ok := links.link(cmd.Path, strconv.Itoa(fd), filepath.Base(e.Path))
	if !ok {
		return
	}
	dirFd := dir
	if dirFd < childFloor(cmd) {
		// The child may overwrite the directory's number before the
		// exec: use a copy above the numbers it moves.
		dup, err := unix.FcntlInt(uintptr(dir), unix.F_DUPFD_CLOEXEC, childFloor(cmd))
		if err != nil {
			_ = unix.Unlinkat(dir, rel, 0)
			return
		}
		e.dirDup = dup
		dirFd = dup
	}
	e.linkDir, e.link = dir, rel
	cmd.Path = "/proc/self/fd/" + strconv.Itoa(dirFd) + "/" + rel
}

// childFloor is the lowest descriptor number cmd's child leaves alone
// until the exec: between fork and exec it moves its standard streams and
// cmd.ExtraFiles to 0..2+len(ExtraFiles) and, to do so, may first copy
// some of them (and its error pipe) to the numbers right above.
func childFloor(cmd *exec.Cmd) int {
	n := 3 + len(cmd.ExtraFiles)
	return 2*n + 2 // the targets, then at most one copy of each and of the pipe
}

// inheritedFd returns a close-on-exec descriptor of the file that keeps its
// number in cmd's child until the exec: numbered at least childFloor(cmd).
// The file's own descriptor nearly always is; otherwise a copy above it
// is made, closed with the file.
func (e *Executable) inheritedFd(cmd *exec.Cmd) int {
	floor := childFloor(cmd)
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

// linkDir is the process's directory of exec links, made at the first
// Prepare of a binary and kept for the life of the process: a launch
// makes one link in it and removes it (two system calls), where a
// directory of its own per launch took four. It is held by a descriptor,
// and every link is made, executed and removed through that descriptor,
// so whatever happens to the directory's name (a cleaner removing it, a
// directory of the same name made by someone else) cannot redirect a
// launch. It holds a directory per descriptor number N a checked file
// was executed through, and in it, while that launch starts, the link
// NAME -> /proc/self/fd/N: a descriptor number is held by one launch at a
// time, so no two launches make the same link. The directory is left
// behind when the process exits, to the next engine's sweep
// (sweepLinkDirs), unless the process removed it (RemoveLinkDir); a
// process that finds it can no longer make links in it (it was deleted)
// makes a new one.
type linkDir struct {
	mu   sync.Mutex
	fd   int    // -1 until made
	path string // where fd's directory was made
}

var links = &linkDir{fd: -1}

// linkDirMinFd is the lowest number the directory's descriptor takes, so
// that children started with up to one extra file (childFloor) can use
// it as it is.
const linkDirMinFd = 10

// link makes the link sub/name -> target and returns the directory's
// descriptor and the link's path relative to it, or false if it cannot
// (the process is then named after the descriptor number).
func (l *linkDir) link(target, sub, name string) (dir int, rel string, ok bool) {
	rel = sub + "/" + name
	for range 2 {
		dir = l.open()
		if dir < 0 {
			return -1, "", false
		}
		err := unix.Symlinkat(target, dir, rel)
		if err == unix.ENOENT {
			// The first launch through this descriptor number, or the
			// directory was deleted (nothing can be made in it then).
			if err = unix.Mkdirat(dir, sub, 0o700); err == nil || err == unix.EEXIST {
				err = unix.Symlinkat(target, dir, rel)
			}
		}
		if err == unix.EEXIST {
			// Left by a launch whose removal failed: this process's own,
			// since only it writes here, and its number is this launch's now.
			_ = unix.Unlinkat(dir, rel, 0)
			err = unix.Symlinkat(target, dir, rel)
		}
		if err == nil {
			return dir, rel, true
		}
		l.drop(dir)
	}
	return -1, "", false
}

// open returns the directory's descriptor, making the directory if there
// is none, or -1.
func (l *linkDir) open() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.fd >= 0 {
		return l.fd
	}
	path, err := os.MkdirTemp(linkBase(), linkDirPrefix+strconv.Itoa(os.Getpid())+"-")
	if err != nil {
		return -1
	}
	fd, err := unix.Open(path, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC|unix.O_NOFOLLOW, 0)
	if err != nil {
		_ = os.Remove(path)
		return -1
	}
	if fd < linkDirMinFd {
		if high, err := unix.FcntlInt(uintptr(fd), unix.F_DUPFD_CLOEXEC, linkDirMinFd); err == nil {
			unix.Close(fd)
			fd = high
		}
	}
	l.fd, l.path = fd, path
	return fd
}

// RemoveLinkDir removes the process's directory of exec links, unless a
// launch between Prepare and Close still has its link there, so that a
// process that launches nothing more (a command about to exit) leaves
// nothing for the next engine's sweep; a later Prepare makes a new one.
// The directory's descriptor stays open, as when a launch finds its
// directory deleted, so a launch that prepared in it meanwhile removes
// its link all the same. Safe for concurrent use; does nothing off Linux
// or if no binary was prepared.
func RemoveLinkDir() {
	links.remove()
}

func (l *linkDir) remove() {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.fd < 0 {
		return
	}
	fd, err := unix.Openat(l.fd, ".", unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return
	}
	dir := os.NewFile(uintptr(fd), l.path)
	subs, _ := dir.Readdirnames(-1)
	dir.Close()
	for _, sub := range subs {
		// Fails for the directory of a link still there.
		_ = unix.Unlinkat(l.fd, sub, unix.AT_REMOVEDIR)
	}
	// By name, so only if the name is still this directory's.
	var held, named unix.Stat_t
	if unix.Fstat(l.fd, &held) != nil || unix.Lstat(l.path, &named) != nil || held.Dev != named.Dev || held.Ino != named.Ino {
		return
	}
	if unix.Rmdir(l.path) == nil {
		l.fd, l.path = -1, ""
	}
}

// drop makes the next launch make a new directory if fd is still the
// current one. fd stays open: launches that made links in it remove them
// through it.
func (l *linkDir) drop(fd int) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.fd == fd {
		l.fd = -1
	}
}

// linkBase is where the link directory is made: a memory-backed directory
// when there is one, because on a disk filesystem making and removing a
// link added about 0.3 ms to a launch on the test machine. The process's
// pid in the directory's name tells whose it is. On first use it removes
// the directories that engines no longer running left there
// (sweepLinkDirs).
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

// linkDirPrefix starts the name of every link directory, followed by the
// engine's pid and a dash.
const linkDirPrefix = "vmre-exec-"

// staleLinkAge is how long nothing must have changed in a dead engine's
// link directory before sweepLinkDirs removes it. Every launch changes
// the modification time of the directory it makes its link in, so this
// spares the directory of a live, launching engine whose pid this process
// cannot see (another pid namespace sharing the directory).
const staleLinkAge = time.Minute

// sweepLinkDirs removes base's link directories whose engine no longer
// runs: owned by this user, unchanged for staleLinkAge (the directory and
// the directories in it), and named with a pid that kill(pid, 0) finds no
// process for. A pid reused since keeps its directory, which costs only
// a few empty directories. Errors are ignored: a directory left behind
// never stops a launch.
//
// The checks run cheapest first, and the pid's before the directories in
// it are read: a live engine that launched through many descriptor
// numbers has as many directories in its own, which would otherwise be
// listed and stated at every engine's first launch.
func sweepLinkDirs(base string, now time.Time) {
	entries, err := os.ReadDir(base)
	if err != nil {
		return
	}
	uid := uint32(os.Geteuid())
	self := os.Getpid() // a system call each time
	cutoff := now.Add(-staleLinkAge)
	for _, ent := range entries {
		name := ent.Name()
		rest, ok := strings.CutPrefix(name, linkDirPrefix)
		if !ok || !ent.IsDir() {
			continue
		}
		pidText, _, ok := strings.Cut(rest, "-")
		pid, err := strconv.Atoi(pidText)
		if !ok || err != nil || pid <= 0 || pid == self {
			continue
		}
		path := filepath.Join(base, name)
		var st syscall.Stat_t
		if syscall.Lstat(path, &st) != nil || st.Uid != uid || changedAfter(&st, cutoff) {
			continue
		}
		if !errors.Is(syscall.Kill(pid, 0), syscall.ESRCH) || !subdirsUnchangedSince(path, cutoff) {
			continue
		}
		_ = os.RemoveAll(path) // the links inside, not what they name
	}
}

// changedAfter reports whether the file whose Lstat is st was modified
// after t.
func changedAfter(st *syscall.Stat_t, t time.Time) bool {
	return time.Unix(st.Mtim.Unix()).After(t)
}

// subdirsUnchangedSince reports whether no directory in dir was modified
// after t.
func subdirsUnchangedSince(dir string, t time.Time) bool {
	subs, err := os.ReadDir(dir)
	if err != nil {
		return false
	}
	for _, sub := range subs {
		var sst syscall.Stat_t
		if syscall.Lstat(filepath.Join(dir, sub.Name()), &sst) != nil || changedAfter(&sst, t) {
			return false
		}
	}
	return true
}

// procFDs reports whether /proc/self/fd lists this process's descriptors,
// checked once per process: /proc is mounted, or not, for the life of an
// engine.
var procFDs = sync.OnceValue(func() bool {
	info, err := os.Stat("/proc/self/fd")
	return err == nil && info.IsDir()
})

// removeLink removes the link Prepare made, then the copies of the
// descriptors it made: the link's directory is named after the file's
// descriptor number, which must not be reused before the link is gone.
func (e *Executable) removeLink() {
	if e.link != "" {
		_ = unix.Unlinkat(e.linkDir, e.link, 0)
		e.link = ""
	}
	if e.dirDup > 0 {
		unix.Close(e.dirDup)
		e.dirDup = 0
	}
	if e.dup != nil {
		_ = e.dup.Close()
		e.dup = nil
	}
}
