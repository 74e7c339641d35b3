package subprocess

import (
	"cmp"
	"context"
	"crypto/rand"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"runtime"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/vmre/vmre"
	"github.com/vmre/vmre/internal/handshakeauth"
	"github.com/vmre/vmre/internal/preflight"
	"github.com/vmre/vmre/server"
)

// NewCmd returns an [exec.Cmd] for the plugin at path, prepared for
// supervision: on Linux it starts in a process group of its own and gets
// SIGKILL as its parent-death signal. Bootstrap applies the same settings
// to any Cmd, so NewCmd is a convenience, not a requirement.
func NewCmd(path string, args ...string) *exec.Cmd {
	cmd := exec.Command(path, args...)
	prepareSysProcAttr(cmd)
	return cmd
}

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

// Bootstrap starts cmd as a plugin and runs the handshake with it. It
// blocks until the outcome is known and returns it at once:
//
//   - the plugin called Initialize with an accepted version: its [Status]
//     and the running plugin, a *[Process] (a [vmre.Runtime]);
//   - it announced another version: the plugin is answered
//     failed_precondition and the error reads "handshake failed: protocol
//     version mismatch engine: 42 vm: 41", matching
//     vmre.ErrHandshakeFailed and vmre.ErrProtocolVersionMismatch (and
//     errors.As a *vmre.VersionMismatchError);
//   - no Initialize within HandshakeTimeout: "handshake failed: timeout",
//     matching vmre.ErrHandshakeFailed, vmre.ErrHandshakeTimeout and
//     vmre.ErrProcessNotFound;
//   - the process exited first: reported as soon as it exits (not after the
//     timeout), matching vmre.ErrHandshakeFailed and vmre.ErrProcessExited,
//     with a *vmre.ExitError carrying the exit code or signal and the last
//     Config.StderrTailLines lines of stderr;
//   - ctx ended first: ctx's error (and cause), wrapped with
//     vmre.ErrHandshakeFailed.
//
// How: Bootstrap first checks the file cmd would execute (see "Pre-flight
// checks" in the package documentation): a plugin that is missing, not a
// regular executable file, built for another OS or architecture, whose ELF
// or "#!" interpreter is missing, or that does not match Config.SHA256,
// fails with an error matching vmre.ErrHandshakeFailed and
// vmre.ErrNotExecutable or vmre.ErrChecksumMismatch before anything is
// started or opened. It then opens its own listener on 127.0.0.1:0 and
// serves the vm.runtime.Runtime handshake there (gRPC, gRPC-Web and
// Connect over HTTP/1.1 and h2c, see package server), builds the plugin's
// environment from cmd.Env (or, if cmd.Env is nil, os.Environ() with PWD
// set to cmd.Dir made absolute when cmd.Dir is set, as os/exec does) under
// Config.EnvPolicy, sets the listener's address under every name in
// Config.EnvVars and a fresh random secret under vmre.HandshakeTokenKey,
// and starts the process with its stdout and stderr bridged into
// Config.Log. Callers that Config.HandshakeAuth does not admit (see "Who
// may handshake" in the package documentation) are refused with
// unauthenticated or permission_denied and decide nothing. Only the first
// admitted Initialize that passes validation decides the handshake; later
// ones are refused with vmre.ErrAlreadyInitialized. The listener is closed
// before Bootstrap returns, and the server shuts down right after
// delivering its answer, or at once, closing its connections, when the
// process has been reaped (so it never delays Done or Stop). After a
// failed handshake Bootstrap waits at most a second for the answer to go
// out, and not past ctx, then closes the server and its connections.
//
// cmd must not have been started, its Stdout and Stderr must be nil and its
// Stdin nil or an *os.File (any other reader needs a copying goroutine that
// cmd.Wait waits for, which could keep the plugin from ever being reaped).
// Bootstrap sets cmd.Env, cmd.Stdout, cmd.Stderr and, on Linux,
// cmd.SysProcAttr's process group (one of the plugin's own) and
// parent-death signal (SIGKILL, overriding any other, such as avalanchego's
// SIGTERM, which a plugin ignoring SIGTERM survives). On Linux, for a
// binary, it also appends the checked file to cmd.ExtraFiles and points
// cmd.Path at it (/proc/self/fd/N, through a short-lived link named like
// the plugin so that the process keeps its name in ps and top; cmd.Args,
// and so the plugin's argv[0], stay as they were). A "#!" script is
// executed by its checked absolute path, which its interpreter gets as $0,
// and inherits no descriptor; with Config.SHA256 set it is executed
// through /proc/self/fd/N like a binary, so that the pinned contents are
// what runs, and its $0 is then /proc/self/fd/N.
// config may be nil for all defaults; it is not modified. Invalid
// configuration errors match vmre.ErrInvalidConfig, and a process that
// cannot be started gives an error matching vmre.ErrHandshakeFailed that
// wraps exec's error, naming the plugin's checked path rather than the
// link or /proc/self/fd path it was executed through.
//
// On every failure the process group is SIGKILLed at once (the plugin never
// became a runtime, so it gets no grace period) and reaped, and its output
// drained, before Bootstrap returns; no goroutine is left behind. The
// secret is never logged.
func Bootstrap(ctx context.Context, cmd *exec.Cmd, config *Config) (*Status, vmre.Stopper, error) {
	if cmd == nil {
		return nil, nil, fmt.Errorf("%w: cmd is nil", vmre.ErrInvalidConfig)
	}
	cfg, err := config.withDefaults(cmd.Path)
	if err != nil {
		return nil, nil, err
	}
	switch {
	case cmd.Process != nil:
		return nil, nil, fmt.Errorf("%w: cmd has already been started", vmre.ErrInvalidConfig)
	case cmd.Stdout != nil || cmd.Stderr != nil:
		return nil, nil, fmt.Errorf("%w: cmd.Stdout and cmd.Stderr must be nil: Bootstrap bridges them into the log", vmre.ErrInvalidConfig)
	}
	if _, isFile := cmd.Stdin.(*os.File); cmd.Stdin != nil && !isFile {
		return nil, nil, fmt.Errorf("%w: cmd.Stdin must be nil or an *os.File, not a %T", vmre.ErrInvalidConfig, cmd.Stdin)
	}
	if err := context.Cause(ctx); err != nil {
		return nil, nil, fmt.Errorf("%w: %w", vmre.ErrHandshakeFailed, err)
	}
	exe, err := checkPlugin(cmd, cfg.SHA256)
	if err != nil {
		return nil, nil, err
	}

	l, err := launch(cmd, &cfg, exe)
	if err != nil {
		return nil, nil, err
	}
	p := l.p

	timer := time.NewTimer(cfg.HandshakeTimeout)
	defer timer.Stop()
	var (
		res      handshakeResult
		failure  error
		finished bool // the handshake was answered
		exited   bool
	)
	select {
	case res = <-l.hs.result:
		finished = true
	case <-p.exited:
		exited = true
	case <-timer.C:
		failure = errHandshakeTimeout
	case <-ctx.Done():
		failure = fmt.Errorf("%w: %w", vmre.ErrHandshakeFailed, context.Cause(ctx))
	}
	// No new handshake connections, whatever the outcome; the server
	// shuts down as soon as its last answer is out.
	stopAccepting(l.ln)

	switch {
	case finished && res.err == nil:
		// The first launch of the program overlaps the watchdog's start
		// with the plugin's; every later one finds it ready.
		<-l.watchdogReady
		p.vmShutdown, p.vmAddr = cfg.VMShutdown, res.addr
		st := &Status{
			Pid:               p.pid,
			Addr:              res.addr,
			ProtocolVersion:   res.version,
			StartedAt:         l.startedAt,
			HandshakeDuration: res.at.Sub(l.startedAt),
		}
		p.log.Info().Str("addr", st.Addr).Uint32("protocol_version", st.ProtocolVersion).
			Dur("handshake_duration", st.HandshakeDuration).Msg("vm handshake complete")
		return st, p, nil
	case finished:
		failure = fmt.Errorf("%w: %w", vmre.ErrHandshakeFailed, res.err)
		// Let the server deliver failed_precondition before the plugin is
		// killed. Nothing else is to be answered, so this waits neither for
		// the graceful shutdown of a connection the plugin left mid-request
		// (up to HandshakeTimeout) nor past ctx: then the server is closed
		// hard, cutting at worst an answer for a plugin about to be killed.
		answerWait := cmp.Or(cfg.failedAnswerWait, defaultFailedAnswerWait)
		wait := time.NewTimer(min(answerWait, cfg.HandshakeTimeout))
		select {
		case <-p.serverDone:
		case <-wait.C:
		case <-ctx.Done():
		}
		wait.Stop()
		p.stopServer()
	case exited:
		<-p.done
		failure = fmt.Errorf("%w: %w", vmre.ErrHandshakeFailed, p.exitError())
	}
	p.startStop(0)
	<-p.done
	p.log.Debug().Err(failure).Msg("vm handshake failed")
	return nil, nil, failure
}

// defaultFailedAnswerWait bounds how long a failed handshake waits for the
// server to deliver its answer before Bootstrap closes the server and kills
// the plugin. The answer takes microseconds; the bound only matters when the
// plugin holds another connection mid-request, and allows for a starved
// machine.
const defaultFailedAnswerWait = time.Second

// errHandshakeTimeout reads "handshake failed: timeout", the text users
// of avalanchego search for, and matches ErrHandshakeFailed,
// ErrHandshakeTimeout and, as in avalanchego, ErrProcessNotFound.
var errHandshakeTimeout error = handshakeTimeoutError{}

type handshakeTimeoutError struct{}

func (handshakeTimeoutError) Error() string {
	return vmre.ErrHandshakeFailed.Error() + ": " + vmre.ErrHandshakeTimeout.Error()
}

func (handshakeTimeoutError) Unwrap() []error {
	return []error{vmre.ErrHandshakeFailed, vmre.ErrHandshakeTimeout, vmre.ErrProcessNotFound}
}

// launched is a started plugin whose handshake is pending.
type launched struct {
	p             *Process
	hs            *handshake
	ln            net.Listener
	startedAt     time.Time
	watchdogReady <-chan struct{}
}

// launch serves the handshake, starts the process and its supervisor,
// readers and server goroutines. It closes exe once the process has
// started. On error nothing is left running.
func launch(cmd *exec.Cmd, cfg *settings, exe *preflight.Executable) (*launched, error) {
	defer exe.Close() // on early returns; closed right after Start otherwise
	token := rand.Text()
	vmLog := cfg.Log.With().Str(fieldVM, cfg.Name).Logger()
	auth, err := newAuthPolicy(cfg.auth, token, vmLog)
	if err != nil {
		return nil, err
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, fmt.Errorf("%w: listen: %w", vmre.ErrHandshakeFailed, err)
	}
	addr := ln.Addr().String()
	outR, outW, err := os.Pipe()
	if err != nil {
		ln.Close()
		return nil, fmt.Errorf("%w: create stdout pipe: %w", vmre.ErrHandshakeFailed, err)
	}
	errR, errW, err := os.Pipe()
	if err != nil {
		ln.Close()
		outR.Close()
		outW.Close()
		return nil, fmt.Errorf("%w: create stderr pipe: %w", vmre.ErrHandshakeFailed, err)
	}

	cmd.Env = pluginEnv(cmd.Env, cmd.Dir, cfg, addr, token)
	cmd.Stdout, cmd.Stderr = outW, errW
	prepareSysProcAttr(cmd)

	p := &Process{
		cmd:        cmd,
		graceful:   cfg.GracefulTimeout,
		tail:       newTail(cfg.StderrTailLines),
		stdoutDone: make(chan struct{}),
		stderrDone: make(chan struct{}),
		exited:     make(chan struct{}),
		serverDone: make(chan struct{}),
		done:       make(chan struct{}),
	}

	startedAt := time.Now()
	err = startCmd(cmd)
	_ = exe.Close() // the child holds its own descriptor now
	outW.Close()
	errW.Close()
	if err != nil {
		if auth != nil {
			auth.SetPid(0)
		}
		ln.Close()
		outR.Close()
		errR.Close()
		return nil, fmt.Errorf("%w: start process: %w", vmre.ErrHandshakeFailed, namePlugin(err, cmd.Path, exe.Path))
	}
	p.pid = cmd.Process.Pid
	if auth != nil {
		// Peer checks wait for this; the server only starts below, so
		// none is waiting yet.
		auth.SetPid(p.pid)
	}
	ready, wdErr := registerWatchdog(p.pid)

	// The server is set up while the plugin starts: until Serve runs, its
	// connection waits in the listen backlog.
	hs := &handshake{accepted: slices.Clone(cfg.AcceptedVersions), auth: auth, result: make(chan handshakeResult, 1)}
	srv := server.NewHTTPServer(sharedHandler())
	srv.BaseContext = func(net.Listener) context.Context {
		return context.WithValue(context.Background(), handshakeKey{}, hs)
	}
	// Counted before supervise starts, so before anything waits for the
	// helpers; supervise cancels the server's shutdown once it has reaped
	// the process.
	p.helpers.Add(1)
	srvCtx, stopServer := context.WithCancel(context.Background())
	p.stopServer = stopServer
	go serveHandshake(srvCtx, p, srv, ln, cfg.HandshakeTimeout)

	p.log = vmLog.With().Int(fieldPid, p.pid).Logger()
	if wdErr != nil {
		p.log.Warn().Err(wdErr).Msg("watchdog unavailable: children of plugins may outlive a killed engine")
	}
	pool := bufPoolFor(cfg.MaxLineBytes)
	p.stdout = newStream(StreamStdout, outR, p.log, &cfg.Config, pool, nil)
	p.stderr = newStream(StreamStderr, errR, p.log, &cfg.Config, pool, p.tail)
	go p.stdout.run(p.stdoutDone)
	go p.stderr.run(p.stderrDone)
	go p.supervise()
	p.log.Debug().Str("engine_addr", addr).Msg("vm process started")
	return &launched{p: p, hs: hs, ln: ln, startedAt: startedAt, watchdogReady: ready}, nil
}

// serveHandshake serves the handshake until Bootstrap closes the listener,
// then lets the last answer out and shuts the server down, and returns
// once every connection's goroutine has ended.
//
// The graceful shutdown lasts until the plugin's connections are idle or
// closed (net/http polls for that on a timer starting at 1 ms and doubling)
// or the launch's handshake timeout, unless ctx ends first: supervise
// cancels ctx as soon as the process has been reaped, since nobody is left
// to read an answer, and Bootstrap once a failed handshake's answer is out
// (or its wait, defaultFailedAnswerWait, has passed), and the connections
// are then closed hard. Done waits for this goroutine, so without that a
// Stop right after the handshake would wait for the next poll tick (up to
// the timeout with a plugin that holds a connection open mid-request). The
// bound was 1 s, and a CI run with 100 plugins starting at once under -race
// cut an answer that was still being written: it must allow for a starved
// machine, and the handshake timeout is the budget the caller chose.
func serveHandshake(ctx context.Context, p *Process, srv *http.Server, ln net.Listener, timeout time.Duration) {
	defer p.helpers.Done()
	defer close(p.serverDone)
	// StateNew is reported on Serve's goroutine (this one) before the
	// connection's goroutine starts, and StateClosed or StateHijacked as
	// that goroutine ends, so every Add happens before the Wait below.
	var conns sync.WaitGroup
	srv.ConnState = func(_ net.Conn, state http.ConnState) {
		switch state {
		case http.StateNew:
			conns.Add(1)
		case http.StateClosed, http.StateHijacked:
			conns.Done()
		}
	}
	_ = srv.Serve(ln)
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	if err := srv.Shutdown(ctx); err != nil {
		_ = srv.Close()
	}
	conns.Wait()
}

// The handshake handler is built once and shared by every launch's server,
// which hands it the launch's *handshake through the request context.
var handshakeHandler struct {
	once sync.Once
	h    http.Handler
}

type handshakeKey struct{}

func sharedHandler() http.Handler {
	handshakeHandler.once.Do(func() {
		path, h := server.NewHandler(launchInitializer{}, server.WithAuthorizer(authorizeLaunch))
		mux := http.NewServeMux()
		mux.Handle(path, h)
		handshakeHandler.h = mux
	})
	return handshakeHandler.h
}

// launchInitializer passes each call to the handshake of the server it
// arrived on.
type launchInitializer struct{}

func (launchInitializer) Initialize(ctx context.Context, protocolVersion uint32, vmAddr string) error {
	hs, ok := ctx.Value(handshakeKey{}).(*handshake)
	if !ok {
		return fmt.Errorf("%w: not a launch's handshake server", vmre.ErrPermissionDenied)
	}
	return hs.Initialize(ctx, protocolVersion, vmAddr)
}

// handshake is the Initializer behind one launch's server.
type handshake struct {
	accepted []uint32
	auth     *handshakeauth.Policy // nil: everyone may call (mode none)
	decided  atomic.Bool
	result   chan handshakeResult // capacity 1: written once
}

type handshakeResult struct {
	version uint32
	addr    string
	err     error
	at      time.Time
}

var _ vmre.Initializer = (*handshake)(nil)

// Initialize decides the handshake on the first call that reaches it; the
// server has validated the request already.
func (h *handshake) Initialize(_ context.Context, protocolVersion uint32, vmAddr string) error {
	at := time.Now()
	if !h.decided.CompareAndSwap(false, true) {
		return fmt.Errorf("%w: the handshake is already complete", vmre.ErrAlreadyInitialized)
	}
	var err error
	if !slices.Contains(h.accepted, protocolVersion) {
		err = &vmre.VersionMismatchError{Accepted: slices.Clone(h.accepted), Got: protocolVersion}
	}
	h.result <- handshakeResult{version: protocolVersion, addr: vmAddr, err: err, at: at}
	// Hand this P to the Bootstrap goroutine just woken (it sits in this
	// P's next slot, where no other P takes it): the launch is done as soon
	// as it runs, and writing the response can wait the few microseconds
	// it needs. Without this, Bootstrap returns only after the response has
	// been written, 100-500 µs later on a busy machine.
	runtime.Gosched()
	return err
}
