//go:build linux

package subprocess

import (
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"syscall"

	"golang.org/x/sys/unix"
)

// The watchdog makes sure no plugin's process group outlives the engine,
// even when the engine is SIGKILLed.
//
// The parent-death signal kills a plugin when the engine dies, but not the
// plugin's own children: they are reparented and live on in its group. So
// the engine runs one small /bin/sh per process (not per plugin: one fork,
// at the first launch, off the handshake's critical path) in a process
// group of its own, without a parent-death signal, reading its stdin from
// a socket whose other end only the engine holds (close-on-exec). For
// every plugin the engine writes "+ PGID" (and the plugin's cgroup
// directory, if it has one) after starting it and "- PGID" just before
// reaping it. When the engine dies, for whatever reason, the kernel closes
// its end; the shell reads EOF and SIGKILLs every group still registered,
// and every registered cgroup through cgroup.kill, which also reaches
// children that left the group. A group is unregistered while its leader
// is still an unreaped zombie, so the shell never holds a group ID that
// could have been reused.
//
// A socket rather than a pipe because a pipe can be opened again through
// /proc/PID/fd/N by any process of the same user: a plugin's child that
// opened the shell's stdin for writing that way kept it from ever reading
// EOF, and could write lines of its own. Opening a socket through /proc
// fails (ENXIO), so only a process allowed to ptrace the shell or the
// engine (pidfd_getfd) can hold the engine's end.
//
// If the shell dies (someone kills it), or stops reading (someone stopped
// it) so that a registration finds the socket full, the engine kills it,
// starts a new one and registers the live groups again. Without /bin/sh,
// plugins still die with the engine, but their children may not; the
// first launch logs that.
const watchdogScript = `trap '' HUP INT QUIT TERM PIPE
g=' '
while read -r op id dir; do
	case $id in ''|*[!0-9]*) continue ;; esac
	case $op in
	+) g="$g$id "; [ -z "$dir" ] || eval "c_$id=\$dir" ;;
	-) case $g in *" $id "*) g="${g%% $id *} ${g#* $id }" ;; esac; unset "c_$id" ;;
	esac
done
for id in $g; do
	kill -KILL -"$id" 2>/dev/null
	eval "d=\${c_$id-}"
	[ -z "$d" ] || echo 1 >"$d/cgroup.kill"
done
`

// WatchdogFunc is the function name of the process-wide goroutine that
// waits for the watchdog shell (Linux only; it runs from the first launch
// for the life of the program). Pass it to a goroutine leak checker along
// with [SpawnerFunc].
const WatchdogFunc = "github.com/vmre/vmre/subprocess.runWatchdog"

type watchdog struct {
	mu     sync.Mutex
	w      int            // the engine's end of the shell's stdin (nonblocking); -1 or 0: no shell
	ready  chan struct{}  // closed once the current shell started or failed
	live   map[int]string // registered groups, each with its cgroup directory or ""
	failed error          // the shell cannot be started at all
	warned bool
	pid    int    // the current shell's, once started
	gen    uint64 // counts shells started; tells a waiter whether its shell is still the current one
}

var theWatchdog = &watchdog{live: make(map[int]string)}

// registerWatchdog registers a new plugin's group, and its cgroup
// directory if it has one ("" otherwise), with the watchdog.
func registerWatchdog(pgid int, cgroupDir string) (<-chan struct{}, error) {
	return theWatchdog.add(pgid, cgroupDir)
}

// add registers pgid. It returns a channel closed once the shell is
// running (at once after the first launch) and, once only, the error that
// prevents the shell from starting, to be logged.
func (wd *watchdog) add(pgid int, cgroupDir string) (<-chan struct{}, error) {
	wd.mu.Lock()
	defer wd.mu.Unlock()
	wd.live[pgid] = cgroupDir
	if wd.failed != nil {
		return closedChan, wd.warnOnce()
	}
	if wd.w <= 0 {
		wd.startLocked() // registers every live group, pgid included
		return wd.ready, nil
	}
	if wd.write('+', pgid, cgroupDir) != nil {
		// The shell is gone and its waiter has not noticed yet, or it
		// stopped reading: replace it.
		wd.replaceLocked()
	}
	return wd.ready, nil
}

func (wd *watchdog) warnOnce() error {
	if wd.warned {
		return nil
	}
	wd.warned = true
	return wd.failed
}

// remove unregisters pgid.
func (wd *watchdog) remove(pgid int) {
	wd.mu.Lock()
	defer wd.mu.Unlock()
	delete(wd.live, pgid)
	if wd.w > 0 && wd.write('-', pgid, "") != nil {
		wd.replaceLocked()
	}
}

// write sends one line. The socket is nonblocking: a shell that does not
// read (stopped, or gone) fails the write instead of blocking every launch.
func (wd *watchdog) write(op byte, pgid int, cgroupDir string) error {
	var buf [24]byte
	b := append(buf[:0], op, ' ')
	b = strconv.AppendInt(b, int64(pgid), 10)
	if cgroupDir != "" && !strings.ContainsAny(cgroupDir, "\n\\") {
		b = append(append(b, ' '), cgroupDir...)
	}
	b = append(b, '\n')
	n, err := unix.Write(wd.w, b)
	if err == nil && n < len(b) {
		err = unix.EAGAIN // a cut line would be misread: treat it as full
	}
	return err
}

// replaceLocked kills the current shell, if it still runs, and starts a
// new one that knows every live group.
func (wd *watchdog) replaceLocked() {
	if wd.pid > 0 {
		_ = unix.Kill(wd.pid, unix.SIGKILL)
	}
	unix.Close(wd.w)
	wd.w = -1
	wd.pid = 0
	wd.startLocked()
}

// startLocked creates the shell's stdin socket, registers every live group
// in it (the socket buffers them until the shell reads) and starts the
// shell in the background.
func (wd *watchdog) startLocked() {
	fds, err := unix.Socketpair(unix.AF_UNIX, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
	if err == nil {
		if err = unix.SetNonblock(fds[1], true); err != nil {
			unix.Close(fds[0])
			unix.Close(fds[1])
		}
	}
	if err != nil {
		wd.w = -1
		wd.ready = closedChan
		return // retried at the next launch
	}
	// The shell only reads.
	_ = unix.Shutdown(fds[0], unix.SHUT_WR)
	wd.w = fds[1]
	wd.gen++
	wd.ready = make(chan struct{})
	for pgid, dir := range wd.live {
		_ = wd.write('+', pgid, dir)
	}
	go runWatchdog(wd, os.NewFile(uintptr(fds[0]), "watchdog"), wd.gen, wd.ready)
}

// runWatchdog starts the shell, then waits for it for as long as it runs.
// If it dies while it is still the current shell, the next one is started
// at once when groups are registered.
func runWatchdog(wd *watchdog, r *os.File, gen uint64, ready chan struct{}) {
	cmd := exec.Command("/bin/sh", "-c", watchdogScript)
	cmd.Stdin = r
	cmd.Env = []string{}
	cmd.Dir = "/"
	// Its own group, so that signals for the engine's group (Ctrl-C in a
	// terminal) do not reach it; no parent-death signal, since outliving
	// the engine is its job.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	err := cmd.Start()
	r.Close()
	if err != nil {
		wd.mu.Lock()
		if wd.gen == gen && wd.w > 0 {
			unix.Close(wd.w)
			wd.w = -1
			wd.failed = err
		}
		wd.mu.Unlock()
		close(ready)
		return
	}
	wd.mu.Lock()
	if wd.gen == gen && wd.w > 0 {
		wd.pid = cmd.Process.Pid
	}
	wd.mu.Unlock()
	close(ready)
	// The shell lives as long as the engine: waited for in the poller, it
	// holds no OS thread for all that time, as cmd.Wait alone would.
	waitExited(cmd.Process.Pid)
	_ = cmd.Wait()

	wd.mu.Lock()
	defer wd.mu.Unlock()
	if wd.gen != gen || wd.w <= 0 {
		return // already replaced
	}
	unix.Close(wd.w)
	wd.w = -1
	wd.pid = 0
	if len(wd.live) > 0 {
		wd.startLocked()
	}
}
