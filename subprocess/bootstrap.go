package subprocess

import (
	"cmp"
	"context"
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

	"connectrpc.com/connect"
	"github.com/vmre/vmre"
	"github.com/vmre/vmre/internal/handshakeauth"
	"github.com/vmre/vmre/internal/logline"
	"github.com/vmre/vmre/internal/preflight"
	"github.com/vmre/vmre/internal/token"
	"github.com/vmre/vmre/server"
)

// NewCmd returns an [exec.Cmd] for the plugin at path, prepared for
// supervision: on Linux it starts in a session of its own and gets
// SIGKILL as its parent-death signal. Bootstrap applies the same settings
// to any Cmd, so NewCmd is a convenience, not a requirement.
func NewCmd(path string, args ...string) *exec.Cmd {
	cmd := exec.Command(path, args...)
	prepareSysProcAttr(cmd)
	return cmd
}

// Bootstrap starts cmd as a plugin, runs the handshake with it and blocks
// until the outcome is known. It returns the running plugin once the
// plugin called Initialize with an accepted version, or an error, as soon
// as it is known, matching [vmre.ErrHandshakeFailed] and:
//
//   - [vmre.ErrProtocolVersionMismatch] (a *[vmre.VersionMismatchError]):
//     "handshake failed: protocol version mismatch engine: 42 vm: 41";
//   - [vmre.ErrHandshakeTimeout] and [vmre.ErrProcessNotFound] (a
//     *[vmre.TimeoutError] with the last lines of stdout and stderr): no
//     Initialize within Config.HandshakeTimeout ("handshake failed:
//     timeout", followed by "; output: ..." when the plugin wrote any);
//   - [vmre.ErrProcessExited] (a *[vmre.ExitError] with the exit status and
//     the last lines of stdout and stderr): the process exited first;
//   - [vmre.ErrNotExecutable] or [vmre.ErrChecksumMismatch]: the pre-flight
//     checks refused the file, before anything was started;
//   - ctx's cause, when ctx ended first.
//
// Invalid settings fail with [vmre.ErrInvalidConfig]. config may be nil for
// all defaults; it is not modified. cmd must not have been started; its
// Stdout and Stderr must be nil (Bootstrap bridges them into Config.Log)
// and its Stdin nil or an *os.File. Bootstrap sets cmd.Env, Stdout, Stderr
// and SysProcAttr, a nil Stdin to a /dev/null file the engine opens once
// and shares between its plugins (never closed), and, on Linux, may point
// cmd.Path at the checked file (see the package documentation); cmd.Args
// stay as they are.
//
// Only callers Config.HandshakeAuth admits decide the handshake, the first
// admitted one only. On failure the process is killed at once, reaped and
// its output drained before Bootstrap returns; no goroutine is left behind.
func Bootstrap(ctx context.Context, cmd *exec.Cmd, config *Config) (*Process, error) {
	if cmd == nil {
		return nil, fmt.Errorf("%w: cmd is nil", vmre.ErrInvalidConfig)
	}
	cfg, err := config.withDefaults(cmd.Path)
	if err != nil {
		return nil, err
	}
	switch {
	case cmd.Process != nil:
		return nil, fmt.Errorf("%w: cmd has already been started", vmre.ErrInvalidConfig)
	case cmd.Stdout != nil || cmd.Stderr != nil:
		return nil, fmt.Errorf("%w: cmd.Stdout and cmd.Stderr must be nil: Bootstrap bridges them into the log", vmre.ErrInvalidConfig)
	}
	if _, isFile := cmd.Stdin.(*os.File); cmd.Stdin != nil && !isFile {
		return nil, fmt.Errorf("%w: cmd.Stdin must be nil or an *os.File, not a %T", vmre.ErrInvalidConfig, cmd.Stdin)
	}
	if err := context.Cause(ctx); err != nil {
		return nil, fmt.Errorf("%w: %w", vmre.ErrHandshakeFailed, err)
	}
	exe, err := checkPlugin(cmd, cfg.SHA256)
	if err != nil {
		return nil, err
	}

	l, err := launch(cmd, &cfg, exe)
	if err != nil {
		return nil, err
	}
	p := l.p
	if l.limitErr != nil {
		stopAccepting(l.ln)
		p.startStop(0)
		<-p.done
		return nil, fmt.Errorf("%w: limit resources: %w", vmre.ErrHandshakeFailed, l.limitErr)
	}

	timer := time.NewTimer(cfg.HandshakeTimeout)
	defer timer.Stop()
	var (
		res      handshakeResult
		failure  error
		finished bool // the handshake was answered
		exited   bool
		timedOut bool
	)
	select {
	case res = <-l.hs.result:
		finished = true
	case <-p.exited:
		exited = true
	case <-timer.C:
		timedOut = true
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
		p.vmShutdown, p.vmTLS = cfg.VMShutdown, cfg.VMTLS
		p.answered = res.answered
		p.status = Status{
			Pid:               p.pid,
			Addr:              res.addr,
			ProtocolVersion:   res.version,
			StartedAt:         l.startedAt,
			HandshakeDuration: res.at.Sub(l.startedAt),
		}
		p.log.Info().Str("addr", res.addr).Uint32("protocol_version", res.version).
			Str("handshake_duration", p.status.HandshakeDuration.Round(time.Microsecond).String()).Msg("vm handshake complete")
		return p, nil
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
	if timedOut {
		// Its output is drained: the last lines may say what it waited for.
		failure = fmt.Errorf("%w: %w", vmre.ErrHandshakeFailed, &vmre.TimeoutError{Tail: outputTail(p.bridge.Tail())})
	}
	p.log.Debug().Err(failure).Msg("vm handshake failed")
	return nil, failure
}

// holdShutdown returns once the server may begin its graceful shutdown:
// at once, unless vmre's client completed the handshake; then once it has
// closed the connection its Initialize came on, after answerHold, or when
// ctx ends.
//
// A Stop right after the handshake waits until that connection has been
// closed (see Process.stopAfterAnswer). The shutdown's GOAWAY makes an
// HTTP/2 client close it as soon as its reader has the answer, which can
// be before the call has returned in the plugin; client.Handshake closes
// it once the call has returned, so without a GOAWAY its close shows that
// the plugin is done with its handshake. Other clients get the GOAWAY at
// once: grpc-go's, as in avalanchego's rpcchainvm.Serve, keeps the
// connection for the plugin's life and closes it on the GOAWAY, as it does
// under avalanchego's engine, which stops its handshake server gracefully
// before its Bootstrap returns.
func (h *handshake) holdShutdown(ctx context.Context) {
	var answered <-chan struct{}
	select {
	case answered = <-h.hold:
	default:
		return
	}
	hold := time.NewTimer(answerHold)
	defer hold.Stop()
	select {
	case <-answered:
	case <-hold.C:
	case <-ctx.Done():
	}
}

// answerHold bounds how long the handshake server, after vmre's client
// completed the handshake, waits for the client to close its connection
// before it shuts down. It allows for a starved machine; only a plugin
// that keeps the connection open, stopped right after its handshake,
// waits it out.
const answerHold = time.Second

// sentToken reports whether the call whose handler context is ctx carried
// the handshake token header, as vmre's client sends it (the server's
// Authorizer has checked its value already when the launch checks tokens).
func sentToken(ctx context.Context) bool {
	if h, ok := ctx.Value(grpcCallHeaderKey{}).(http.Header); ok {
		return h.Get(vmre.HandshakeTokenHeader) != ""
	}
	info, ok := connect.CallInfoForHandlerContext(ctx)
	return ok && info.RequestHeader().Get(vmre.HandshakeTokenHeader) != ""
}

// defaultFailedAnswerWait bounds how long a failed handshake waits for the
// server to deliver its answer before Bootstrap closes the server and kills
// the plugin. The answer takes microseconds; the bound only matters when the
// plugin holds another connection mid-request, and allows for a starved
// machine.
const defaultFailedAnswerWait = time.Second

// launched is a started plugin whose handshake is pending.
type launched struct {
	p             *Process
	hs            *handshake
	ln            net.Listener
	startedAt     time.Time
	watchdogReady <-chan struct{}
	limitErr      error // the plugin's rlimits could not be set
}

// launch serves the handshake, starts the process and its supervisor,
// readers and server goroutines. It closes exe once the process has
// started. On error nothing is left running.
func launch(cmd *exec.Cmd, cfg *settings, exe *preflight.Executable) (*launched, error) {
	defer exe.Close() // on early returns; closed right after Start otherwise
	secret := token.New()
	vmLog := cfg.Log.With().Str(fieldVM, cfg.Name).Logger()
	auth, err := newAuthPolicy(cfg.HandshakeAuth, secret, vmLog, cfg.Refusals)
	if err != nil {
		return nil, err
	}
	ln, err := listenHandshake()
	if err != nil {
		return nil, fmt.Errorf("%w: listen: %w", vmre.ErrHandshakeFailed, err)
	}
	addr := ln.Addr().String()
	outR, outW, err := logline.NewPipe()
	if err != nil {
		ln.Close()
		return nil, fmt.Errorf("%w: create stdout pipe: %w", vmre.ErrHandshakeFailed, err)
	}
	errR, errW, err := logline.NewPipe()
	if err != nil {
		ln.Close()
		outR.Close()
		outW.Close()
		return nil, fmt.Errorf("%w: create stderr pipe: %w", vmre.ErrHandshakeFailed, err)
	}

	cmd.Env = pluginEnv(cmd, cfg, addr, secret)
	cmd.Stdout, cmd.Stderr = outW, errW
	if cmd.Stdin == nil {
		if f := devNull(); f != nil {
			cmd.Stdin = f
		}
	}
	prepareSysProcAttr(cmd)
	var cg *cgroup
	if cfg.CgroupRoot != "" {
		if cg, err = newCgroup(cfg.CgroupRoot, cfg.Name, cfg.Limits); err != nil {
			ln.Close()
			outR.Close()
			outW.Close()
			errR.Close()
			errW.Close()
			return nil, err
		}
		cg.apply(cmd.SysProcAttr)
	}

	p := &Process{
		cmd:        cmd,
		graceful:   cfg.GracefulTimeout,
		stdoutDone: make(chan struct{}),
		stderrDone: make(chan struct{}),
		exited:     make(chan struct{}),
		serverDone: make(chan struct{}),
		answered:   closedChan,
		done:       make(chan struct{}),
	}

	p.cgroup = cg
	startedAt := time.Now()
	err = startCmd(cmd)
	cg.started()
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
		cg.remove()
		return nil, fmt.Errorf("%w: start process: %w", vmre.ErrHandshakeFailed, namePlugin(err, cmd.Path, exe.Path))
	}
	p.pid = cmd.Process.Pid
	// Before the handshake server serves: the plugin's Initialize waits in
	// the listen backlog until then, so no plugin completes a handshake
	// without its limits.
	limitErr := applyRlimits(p.pid, cfg.Limits, cg != nil)
	if auth != nil {
		// Peer checks wait for this; the server only starts below, so
		// none is waiting yet.
		auth.SetPid(p.pid)
	}
	ready, wdErr := registerWatchdog(p.pid, p.CgroupDir())

	// The server is set up while the plugin starts: until it serves, its
	// connection waits in the listen backlog.
	hs := newHandshake(cfg.AcceptedVersions, auth)
	// Connections refused as foreign are paced from then on, so that a
	// flood of them does not starve the plugin's own; the pacing wrapper
	// is outermost, so that the connections' contexts see it, and
	// Bootstrap keeps the bare listener for stopAccepting.
	// Counted before supervise starts, so before anything waits for the
	// helpers; supervise cancels the server's shutdown once it has reaped
	// the process.
	p.helpers.Add(1)
	srvCtx, stopServer := context.WithCancel(context.Background())
	p.stopServer = stopServer
	var served net.Listener = &handshakeListener{Listener: ln, ctx: srvCtx, helpers: &p.helpers, linger: cfg.HandshakeTimeout}
	if auth != nil {
		served = auth.Listener(served)
	}
	go func() {
		defer p.helpers.Done()
		defer close(p.serverDone)
		serveHandshake(srvCtx, hs, served, server.NewErrorLog(vmLog), cfg.HandshakeTimeout)
	}()

	p.log = vmLog.With().Int(fieldPid, p.pid).Logger()
	if wdErr != nil {
		p.log.Warn().Err(wdErr).Msg("watchdog unavailable: children of plugins may outlive a killed engine")
	}
	p.bridge = logline.NewBridge(logline.Options{
		Log:          p.log,
		Format:       cfg.LogFormat,
		MaxLineBytes: cfg.MaxLineBytes,
		TailLines:    cfg.TailLines,
		Pid:          p.pid,
		OnLine:       cfg.OnOutput,
	})
	p.stdout = p.bridge.Reader(logline.Stdout, outR)
	p.stderr = p.bridge.Reader(logline.Stderr, errR)
	p.stdout.Start(func() { close(p.stdoutDone) })
	p.stderr.Start(func() { close(p.stderrDone) })
	if !watchExit(p.pid, p.supervise) {
		go p.supervise(false)
	}
	p.log.Debug().Str("engine_addr", addr).Msg("vm process started")
	return &launched{p: p, hs: hs, ln: ln, startedAt: startedAt, watchdogReady: ready, limitErr: limitErr}, nil
}

// listenHandshake returns a launch's handshake listener: a fresh loopback
// port. Its connections get no TCP keep-alive (net.Listen would set it up
// with four setsockopt calls on every accepted connection): one lives for a
// handshake and its graceful shutdown, both bounded by the handshake
// timeout, and its peer is the plugin, whose death the engine learns from
// its exit. It is a plain TCP socket, not the Multipath TCP one Go's
// listeners default to where the kernel has it: over loopback there is
// one path, and the MPTCP socket's set-up, accept and shutdown cost the
// kernel more at every launch.
func listenHandshake() (net.Listener, error) {
	lc := net.ListenConfig{KeepAlive: -1}
	lc.SetMultipathTCP(false)
	return lc.Listen(context.Background(), "tcp", "127.0.0.1:0")
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
	// hold gets the answerRead channel of the call that completed the
	// handshake, if it came from vmre's client (see holdShutdown);
	// capacity 1.
	hold chan (<-chan struct{})
}

type handshakeResult struct {
	version  uint32
	addr     string
	err      error
	at       time.Time
	answered <-chan struct{} // answerRead of the deciding call
}

var _ vmre.Initializer = (*handshake)(nil)

// newHandshake returns the handshake of one launch that accepts the
// given versions; auth may be nil.
func newHandshake(accepted []uint32, auth *handshakeauth.Policy) *handshake {
	return &handshake{
		accepted: slices.Clone(accepted),
		auth:     auth,
		result:   make(chan handshakeResult, 1),
		hold:     make(chan (<-chan struct{}), 1),
	}
}

// Initialize decides the handshake on the first call that reaches it; the
// server has validated the request already.
func (h *handshake) Initialize(ctx context.Context, protocolVersion uint32, vmAddr string) error {
	at := time.Now()
	if !h.decided.CompareAndSwap(false, true) {
		return fmt.Errorf("%w: the handshake is already complete", vmre.ErrAlreadyInitialized)
	}
	var err error
	answered := answerRead(ctx)
	if !slices.Contains(h.accepted, protocolVersion) {
		err = &vmre.VersionMismatchError{Accepted: slices.Clone(h.accepted), Got: protocolVersion}
	} else if sentToken(ctx) {
		h.hold <- answered
	}
	h.result <- handshakeResult{version: protocolVersion, addr: vmAddr, err: err, at: at, answered: answered}
	// Hand this P to the Bootstrap goroutine just woken (it sits in this
	// P's next slot, where no other P takes it): the launch is done as soon
	// as it runs, and writing the response can wait the few microseconds
	// it needs. Without this, Bootstrap returns only after the response has
	// been written, 100-500 µs later on a busy machine.
	runtime.Gosched()
	return err
}
