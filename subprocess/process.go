package subprocess

import (
	"context"
	"crypto/tls"
	"errors"
	"os"
	"os/exec"
	"sync"
	"syscall"
	"time"

	"github.com/rs/zerolog"
	"github.com/vmre/vmre"
	"github.com/vmre/vmre/internal/logline"
)

// Process is a plugin started by [Bootstrap] that completed its handshake.
// It implements [vmre.Runtime]. All its methods are safe for concurrent
// use.
//
// Exactly one goroutine waits for the process for its whole life; it reaps
// it as soon as it exits, whether or not anyone called Stop, and, on
// Linux, first SIGKILLs whatever is left in the plugin's process group, so
// a plugin that exits never leaves its own children behind.
type Process struct {
	cmd      *exec.Cmd
	pid      int
	log      zerolog.Logger
	graceful time.Duration
	bridge   *logline.Bridge
	// vmShutdown: Stop calls the VM's Shutdown first (Config.VMShutdown).
	// Set, with status, before Bootstrap returns the Process.
	vmShutdown bool
	vmTLS      *tls.Config // for a tls:// VM address (Config.VMTLS)
	status     Status
	// cgroup is the plugin's own cgroup (Config.CgroupRoot), or nil.
	cgroup *cgroup

	stdout, stderr         *logline.Reader
	stdoutDone, stderrDone chan struct{}

	exited     chan struct{} // closed once reaped
	serverDone chan struct{} // closed once the handshake server is shut down
	// answered is closed once the client of the call that completed the
	// handshake has closed that call's connection (see answerRead and
	// holdShutdown).
	// Set before Bootstrap returns the Process.
	answered <-chan struct{}
	done     chan struct{} // closed once reaped, drained and helpers ended
	// stopServer ends the handshake server's graceful shutdown early; set
	// before the server and supervise start.
	stopServer context.CancelFunc

	mu       sync.Mutex
	reaped   bool
	finished bool     // done is closed: AfterExit runs its function at once
	onExit   []func() // AfterExit's functions, run once done is closed
	stopping bool
	forced   bool // the stop's grace period ran out: SIGKILL sent
	exit     vmre.ExitStatus
	exitErr  error
	// helpers counts the goroutines besides the readers that must end
	// before done closes: the handshake server and a Stop in progress.
	// Add is only called before the process is reaped (under mu, or
	// before it starts), so never after Wait began.
	helpers sync.WaitGroup
}

var _ vmre.Runtime = (*Process)(nil)

// Status describes a plugin that completed its handshake.
type Status struct {
	// Pid is the plugin's process ID.
	Pid int
	// Addr is the address of the plugin's own VM server, as it announced
	// it in Initialize.
	Addr string
	// ProtocolVersion is the version the plugin announced (one of the
	// accepted ones).
	ProtocolVersion uint32
	// StartedAt is when the process was started.
	StartedAt time.Time
	// HandshakeDuration is the time from StartedAt to the Initialize call.
	HandshakeDuration time.Duration
}

// Status returns what the handshake established. It never changes.
func (p *Process) Status() Status { return p.status }

// Pid returns the process ID, which is also its process group ID on Linux.
func (p *Process) Pid() int { return p.pid }

// Done returns a channel that is closed once the process has exited and
// been reaped, all its output has been read into the log (and OnOutput),
// and every goroutine Bootstrap started for it has
// ended.
func (p *Process) Done() <-chan struct{} { return p.done }

// ExitStatus reports how the process ended. It is valid once Done is
// closed; before that it returns the zero ExitStatus.
func (p *Process) ExitStatus() vmre.ExitStatus {
	select {
	case <-p.done:
		p.mu.Lock()
		defer p.mu.Unlock()
		return p.exit
	default:
		return vmre.ExitStatus{}
	}
}

// Err reports why the process ended, once Done is closed: nil for exit
// status 0, else a *[vmre.ExitError] (matching [vmre.ErrProcessExited])
// with the status and the last lines of stderr, or, rarely, the error
// waiting for the process returned. Before Done is closed it returns nil.
func (p *Process) Err() error {
	select {
	case <-p.done:
		p.mu.Lock()
		defer p.mu.Unlock()
		return p.exitErr
	default:
		return nil
	}
}

// Stop stops the plugin: SIGTERM to its process group, then, if the
// process has not exited after Config.GracefulTimeout, SIGKILL to the
// group. The process is always reaped. With Config.VMShutdown the VM's
// Shutdown method is called before the SIGTERM.
//
// Bootstrap returns as soon as the engine has decided the handshake, when
// the plugin's client may still be reading the answer; a plugin that stops
// on SIGTERM (or on Shutdown) at that point would fail its own handshake.
// So a Stop that begins then first waits until the plugin has closed its
// handshake connection: vmre's client does once its call has returned,
// grpc-go's on the handshake server's GOAWAY once it has the answer, and
// any client once it has read to the end of a connection the server
// closed first. It waits at most the grace period, and the wait counts
// toward it: the SIGKILL comes no later for it.
//
// Stop blocks until Done is closed or ctx is done, whichever comes first;
// if ctx ends first the stop still completes in the background. It is
// idempotent and safe for concurrent use: every call waits for the same
// stop, and a call after the process exited on its own just returns. No
// goroutine outlives the process.
//
// On Windows there is no graceful signal: Stop kills the process at once.
// On other systems than Linux only the process itself is signalled, not its
// group (see the package documentation).
func (p *Process) Stop(ctx context.Context) {
	p.startStop(p.graceful)
	select {
	case <-p.done:
	case <-ctx.Done():
	}
}

// startStop starts the one stop sequence, with the given grace period (0:
// kill at once), unless it already started or the process is gone. The
// first signal goes out from the caller's goroutine: a plugin that exits on
// SIGTERM should not first wait for a new goroutine to be scheduled.
func (p *Process) startStop(grace time.Duration) {
	p.mu.Lock()
	if p.stopping || p.reaped {
		p.mu.Unlock()
		return
	}
	p.stopping = true
	// Added under the lock that reap takes before supervise waits for the
	// helpers, so the Add happens before that Wait.
	p.helpers.Add(1)
	p.mu.Unlock()
	switch {
	case grace <= 0:
		p.killNow()
	case !isClosed(p.answered):
		go p.stopAfterAnswer(grace)
	case p.vmShutdown:
		go p.shutdownThenTerm(grace, grace)
	case p.terminate():
		go p.killAfter(grace)
	}
}

// stopAfterAnswer is the stop sequence of a Stop that began before the
// handshake's answer was out: it waits for that, or for the process's
// exit, for at most grace, then stops as usual with what is left of grace
// for the first step.
func (p *Process) stopAfterAnswer(grace time.Duration) {
	start := time.Now()
	timer := time.NewTimer(grace)
	select {
	case <-p.answered:
	case <-p.exited:
	case <-timer.C:
		p.log.Debug().Str("graceful_timeout", grace.String()).Msg("handshake connection still open; stopping anyway")
	}
	timer.Stop()
	left := grace - time.Since(start)
	switch {
	case p.vmShutdown:
		p.shutdownThenTerm(left, grace)
	case p.terminate():
		p.killAfter(left)
	}
}

func isClosed(c <-chan struct{}) bool {
	select {
	case <-c:
		return true
	default:
		return false
	}
}

// terminate sends SIGTERM and reports whether the grace period must now be
// waited out (killAfter). If SIGTERM cannot be sent it sends SIGKILL
// instead and ends the stop's helper.
func (p *Process) terminate() bool {
	if p.signalTerm() != nil {
		p.killNow()
		return false
	}
	return true
}

// killNow sends SIGKILL and ends the stop's helper.
func (p *Process) killNow() {
	_ = p.signalKill()
	p.helpers.Done()
}

// killAfter sends SIGKILL if the process has not exited within grace of
// its SIGTERM.
func (p *Process) killAfter(grace time.Duration) {
	defer p.helpers.Done()
	timer := time.NewTimer(grace)
	defer timer.Stop()
	select {
	case <-p.exited:
	case <-timer.C:
		p.log.Warn().Str("graceful_timeout", grace.String()).Msg("vm process ignored sigterm; killing it")
		p.mu.Lock()
		p.forced = true
		p.mu.Unlock()
		_ = p.signalKill()
	}
}

// supervise is the one goroutine that waits for the process (exited: the
// process has exited already, see watchExit). It reaps it, waits until
// its output is drained and helpers have ended, and closes done.
func (p *Process) supervise(exited bool) {
	waitErr := p.reap(exited) // sets p.reaped
	state := p.cmd.ProcessState
	close(p.exited)
	// Nobody is left to read a handshake answer: close the handshake
	// server now rather than let Done wait for its graceful shutdown.
	p.stopServer()

	// The plugin's group is dead, so the pipes reach EOF as soon as they
	// are empty, unless a process that left the group holds them open.
	// Give it drainTimeout, then stop waiting (what is buffered is still
	// read).
	timer := time.NewTimer(drainTimeout)
	for _, streamDone := range []chan struct{}{p.stdoutDone, p.stderrDone} {
		select {
		case <-streamDone:
		case <-timer.C:
			p.stdout.StopWaiting()
			p.stderr.StopWaiting()
			<-streamDone
		}
	}
	timer.Stop()

	// forced was set before the SIGKILL it describes, so before the reap.
	p.mu.Lock()
	forced := p.forced
	p.mu.Unlock()
	status, exitErr := exitStatusOf(state, waitErr, p.pid, forced, outputTail(p.bridge.Tail()))
	p.mu.Lock()
	p.exit, p.exitErr = status, exitErr
	stopping := p.stopping
	p.mu.Unlock()

	p.helpers.Wait()
	// Its processes are dead or dying: reap killed them all.
	p.cgroup.remove()
	var ev *zerolog.Event
	switch {
	case stopping:
		ev = p.log.Debug()
	case exitErr != nil:
		ev = p.log.Warn()
	default:
		ev = p.log.Info()
	}
	if ev != nil {
		if status.Signal != "" {
			ev = ev.Str("signal", status.Signal)
		} else {
			ev = ev.Int("exit_code", status.Code)
		}
		// The exit follows the panic: its event names it, so the two
		// are found together.
		if msg, ok := p.bridge.Tail().Panic(); ok {
			ev = ev.Str("panic", msg)
		}
		if stopping {
			ev.Msg("vm process stopped")
		} else {
			ev.Msg("vm process exited")
		}
	}
	close(p.done)
	p.mu.Lock()
	p.finished = true
	onExit := p.onExit
	p.onExit = nil
	p.mu.Unlock()
	for _, f := range onExit {
		f()
	}
}

// AfterExit arranges for f to run once Done is closed: on the goroutine
// that closed it, one function after the other in the order they were
// given, or, once that goroutine has taken them, at once on the caller's.
// It lets a caller act on the exit without a goroutine parked on Done for
// the plugin's life; f should not block for long, since later functions
// wait for it. Safe for concurrent use.
func (p *Process) AfterExit(f func()) {
	p.mu.Lock()
	if !p.finished {
		p.onExit = append(p.onExit, f)
		p.mu.Unlock()
		return
	}
	p.mu.Unlock()
	f()
}

// exitStatusOf describes how the process ended, and the error [Process.Err]
// reports. state is nil only if waiting failed; forced: a stop SIGKILLed it.
func exitStatusOf(state *os.ProcessState, waitErr error, pid int, forced bool, tail []vmre.TailLine) (vmre.ExitStatus, error) {
	if state == nil {
		if waitErr == nil {
			waitErr = errors.New("no process state")
		}
		return vmre.ExitStatus{Code: -1, ForcedKill: forced}, waitErr
	}
	st := vmre.ExitStatus{Code: state.ExitCode(), ForcedKill: forced}
	if ws, ok := state.Sys().(syscall.WaitStatus); ok && ws.Signaled() {
		st.Code = -1
		st.Signal = ws.Signal().String()
	}
	if st.Success() {
		return st, nil
	}
	return st, &vmre.ExitError{Pid: pid, ExitStatus: st, Tail: tail}
}

// exitError returns the evidence for a process that ended before its
// handshake, whatever its status (exit status 0 included). Call it after
// done is closed.
func (p *Process) exitError() *vmre.ExitError {
	var exitErr *vmre.ExitError
	if errors.As(p.Err(), &exitErr) {
		return exitErr
	}
	return &vmre.ExitError{Pid: p.pid, ExitStatus: p.ExitStatus(), Tail: outputTail(p.bridge.Tail())}
}

// drainTimeout is how long the readers may take to reach EOF once the
// plugin's group is dead, before they stop waiting.
const drainTimeout = 250 * time.Millisecond

// closedChan is a channel that is always closed.
var closedChan = func() chan struct{} {
	c := make(chan struct{})
	close(c)
	return c
}()

// outputTail returns the tail's lines as an exit error carries them.
func outputTail(t *logline.Tail) []vmre.TailLine {
	lines := t.Lines()
	out := make([]vmre.TailLine, len(lines))
	for i, l := range lines {
		out[i] = vmre.TailLine{Stream: l.Stream, Text: l.Text}
	}
	return out
}
