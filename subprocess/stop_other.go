//go:build !linux

package subprocess

import (
	"net"
	"os/exec"
	"syscall"

	"github.com/vmre/vmre/internal/fdwait"
)

// On systems other than Linux the stop is weaker, and documented as such:
// the plugin gets no process group of its own and no parent-death signal,
// only the plugin itself (not its children) is signalled, and no watchdog
// runs. On Windows there is no SIGTERM: the graceful stop is a kill.

// WatchdogFunc names the watchdog goroutine, which runs on Linux only.
const WatchdogFunc = "github.com/vmre/vmre/subprocess.runWatchdog"

func prepareSysProcAttr(*exec.Cmd) {}

// stopAccepting closes ln.
func stopAccepting(ln net.Listener) { _ = ln.Close() }

// signalTerm asks the process to exit; where that is not possible
// (Windows), it kills it.
func (p *Process) signalTerm() error {
	if err := p.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		return p.cmd.Process.Kill()
	}
	return nil
}

func (p *Process) signalKill() error { return p.cmd.Process.Kill() }

// watchExit waits for no process here: each plugin's supervise waits
// for its own.
func watchExit(int, func(bool)) bool { return false }

// ExitWaiterFunc names the goroutine that waits for the exits of all
// plugins, which runs on Linux only.
const ExitWaiterFunc = fdwait.Func

// reap waits for the process and reaps it. os.Process guards its own
// signals against a reaped PID, so no lock is held while waiting.
func (p *Process) reap(bool) error {
	err := p.cmd.Wait()
	p.mu.Lock()
	p.reaped = true
	p.mu.Unlock()
	return err
}

// registerWatchdog does nothing: there is no watchdog here.
func registerWatchdog(int, string) (<-chan struct{}, error) { return closedChan, nil }
