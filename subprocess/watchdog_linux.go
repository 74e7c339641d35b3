//go:build linux

package subprocess

import (
	"os"
	"os/exec"
	"strconv"
	"sync"
	"syscall"
)

// The watchdog makes sure no plugin's process group outlives the engine,
// even when the engine is SIGKILLed.
//
// The parent-death signal kills a plugin when the engine dies, but not the
// plugin's own children: they are reparented and live on in its group. So
// the engine runs one small /bin/sh per process (not per plugin: one fork,
// at the first launch, off the handshake's critical path) in a process
// group of its own, without a parent-death signal, reading its stdin from
// a pipe whose write end only the engine holds (close-on-exec). For every
// plugin the engine writes "+ PGID" after starting it and "- PGID" just
// before reaping it. When the engine dies, for whatever reason, the kernel
// closes the write end; the shell reads EOF and SIGKILLs every group still
// registered. A group is unregistered while its leader is still an
// unreaped zombie, so the shell never holds a group ID that could have
// been reused.
//
// If the shell dies (someone kills it), the engine starts a new one and
// registers the live groups again. Without /bin/sh, plugins still die with
// the engine, but their children may not; the first launch logs that.
const watchdogScript = `trap '' HUP INT QUIT TERM PIPE
g=' '
while read -r op id; do
	case $op in
	+) g="$g$id " ;;
	-) case $g in *" $id "*) g="${g%% $id *} ${g#* $id }" ;; esac ;;
	esac
done
for id in $g; do kill -KILL -"$id" 2>/dev/null; done
`

// WatchdogFunc is the function name of the process-wide goroutine that
// waits for the watchdog shell (Linux only; it runs from the first launch
// for the life of the program). Pass it to a goroutine leak checker along
// with [SpawnerFunc].
const WatchdogFunc = "github.com/vmre/vmre/subprocess.runWatchdog"

type watchdog struct {
	mu     sync.Mutex
	w      *os.File         // write end of the shell's stdin; nil: no shell
	ready  chan struct{}    // closed once the current shell started or failed
	live   map[int]struct{} // registered groups
	failed error            // the shell cannot be started at all
	warned bool
	pid    int // the current shell's, once started
}

var theWatchdog = &watchdog{live: make(map[int]struct{})}

// registerWatchdog registers a new plugin's group with the watchdog.
func registerWatchdog(pgid int) (<-chan struct{}, error) { return theWatchdog.add(pgid) }

// add registers pgid. It returns a channel closed once the shell is
// running (at once after the first launch) and, once only, the error that
// prevents the shell from starting, to be logged.
func (wd *watchdog) add(pgid int) (<-chan struct{}, error) {
	wd.mu.Lock()
	defer wd.mu.Unlock()
	wd.live[pgid] = struct{}{}
	if wd.failed != nil {
		return closedChan, wd.warnOnce()
	}
	if wd.w == nil {
		wd.startLocked() // registers every live group, pgid included
		return wd.ready, nil
	}
	if wd.write('+', pgid) != nil {
		// The shell is gone and its waiter has not noticed yet.
		wd.w.Close()
		wd.startLocked()
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
	if wd.w != nil {
		_ = wd.write('-', pgid)
	}
}

func (wd *watchdog) write(op byte, pgid int) error {
	var buf [24]byte
	b := append(buf[:0], op, ' ')
	b = strconv.AppendInt(b, int64(pgid), 10)
	b = append(b, '\n')
	_, err := wd.w.Write(b) // shorter than PIPE_BUF: atomic
	return err
}

// startLocked creates the shell's stdin pipe, registers every live group in
// it (the pipe buffers them until the shell reads) and starts the shell in
// the background.
func (wd *watchdog) startLocked() {
	r, w, err := os.Pipe()
	if err != nil {
		wd.w = nil
		wd.ready = closedChan
		return // retried at the next launch
	}
	wd.w = w
	wd.ready = make(chan struct{})
	for pgid := range wd.live {
		_ = wd.write('+', pgid)
	}
	go runWatchdog(wd, r, w, wd.ready)
}

// runWatchdog starts the shell, then waits for it for as long as it runs.
// If it dies while it is still the current shell, the next one is started
// at once when groups are registered.
func runWatchdog(wd *watchdog, r, w *os.File, ready chan struct{}) {
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
		if wd.w == w {
			wd.w.Close()
			wd.w = nil
			wd.failed = err
		}
		wd.mu.Unlock()
		close(ready)
		return
	}
	wd.mu.Lock()
	if wd.w == w {
		wd.pid = cmd.Process.Pid
	}
	wd.mu.Unlock()
	close(ready)
	_ = cmd.Wait()

	wd.mu.Lock()
	defer wd.mu.Unlock()
	if wd.w != w {
		return // already replaced
	}
	wd.w.Close()
	wd.w = nil
	if len(wd.live) > 0 {
		wd.startLocked()
	}
}
