package main

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/signal"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/coreos/go-systemd/v22/daemon"
	"github.com/rs/zerolog"
	"github.com/vmre/vmre"
	"github.com/vmre/vmre/api"
	"github.com/vmre/vmre/config"
	"github.com/vmre/vmre/engine"
	"github.com/vmre/vmre/internal/connlimit"
	"github.com/vmre/vmre/internal/tlsfiles"
	"github.com/vmre/vmre/internal/token"
	"github.com/vmre/vmre/server"
	"github.com/vmre/vmre/subprocess"
)

const defaultListen = "127.0.0.1:9660"

// defaultAPIIdleTimeout closes idle API connections sooner than the
// handshake server's: browsers and gRPC clients reconnect at once, and a
// flood of idle connections holds descriptors.
const defaultAPIIdleTimeout = 30 * time.Second

// busyConnWait is how long a call must have waited for its client before
// the API's connection cap, with every connection busy, closes its
// connection to make room: long enough to spare a reader that is merely
// slow for a moment.
const busyConnWait = time.Second

// runFlags are the flags of `vmre run` beyond the shared engine flags.
type runFlags struct {
	listen        string
	tokenFile     string
	corsOrigins   stringList
	attach        bool
	attachListen  string
	attachToken   string
	configFile    string
	exitOnFailure bool
	tlsCert       string
	tlsKey        string
	clientCA      string
	apiStreams    apiStreamFlags
	dumpable      bool
}

// apiStreamFlags bound the API's connections and its watch and output
// streams (api.Config).
type apiStreamFlags struct {
	maxConns                      int
	idleTimeout                   time.Duration
	maxStreams, maxStreamsPerConn int
	maxCalls                      int
	sendTimeout                   time.Duration
}

func (f *runFlags) register(fs *flag.FlagSet) {
	fs.StringVar(&f.listen, "listen", defaultListen, "address of the engine's API port: dashboard, vmre.v1 API, health and reflection")
	fs.StringVar(&f.tokenFile, "token-file", "", "read the API token (stop, restart and reload need it) from this file, mode 0600, instead of generating one")
	fs.Var(&f.corsOrigins, "cors-origin", "a browser origin besides the dashboard's own allowed to call the API, as scheme://host[:port] (repeatable; default: same origin only)")
	fs.BoolVar(&f.attach, "attach", false, "launch nothing: open a handshake endpoint and register every plugin that handshakes there with its token")
	fs.StringVar(&f.attachListen, "attach-listen", "127.0.0.1:0", "address of the attach handshake endpoint (with --attach): host:port, or unix:/path for a unix socket (mode 0600, removed at exit)")
	fs.StringVar(&f.attachToken, "attach-token-file", "", "read the attach token from this file, mode 0600, instead of generating and printing one (with --attach); re-read when it changes")
	fs.StringVar(&f.tlsCert, "tls-cert", "", "serve the API port and the attach endpoint over TLS with this PEM certificate (chain); re-read when it changes")
	fs.StringVar(&f.tlsKey, "tls-key", "", "the PEM private key of --tls-cert; re-read when it changes")
	fs.StringVar(&f.clientCA, "client-ca", "", "with --tls-cert, require client certificates issued by the CAs in this PEM file (mutual TLS); also verifies VMs that announce tls:// addresses")
	fs.StringVar(&f.configFile, "config", "", "run every runtime this YAML file declares (instead of -- PATH ARGS); SIGHUP or the ReloadConfig RPC re-reads it")
	fs.IntVar(&f.apiStreams.maxConns, "api-max-conns", connlimit.DefaultMax(), "connections the API port holds at once (default: half the descriptor limit, at most 1024); at the cap the one idle the longest is closed")
	fs.DurationVar(&f.apiStreams.idleTimeout, "api-idle-timeout", defaultAPIIdleTimeout, "close an API connection with no request or stream open for this long")
	fs.IntVar(&f.apiStreams.maxStreams, "api-max-streams", api.DefaultMaxStreams, "watch and output streams the API serves at once; more are refused with resource_exhausted")
	fs.IntVar(&f.apiStreams.maxStreamsPerConn, "api-max-streams-per-conn", api.DefaultMaxStreamsPerConn, "watch and output streams one API connection may hold")
	fs.IntVar(&f.apiStreams.maxCalls, "api-max-calls", api.DefaultMaxCalls, "other API calls served at once; beyond, a new call ends the one waiting the longest for its client to read, else is refused with resource_exhausted (health and token holders have a reserve)")
	fs.DurationVar(&f.apiStreams.sendTimeout, "api-send-timeout", api.DefaultSendTimeout, "end an API response whose client accepts none of it for this long")
	fs.BoolVar(&f.dumpable, "dumpable", false, "leave vmre dumpable (Linux): by default it makes itself non-dumpable, so that processes of its user (plugins too) can neither ptrace it nor read its /proc/PID/mem, environ or fd; --dumpable for core dumps or a debugger")
	fs.BoolVar(&f.exitOnFailure, "exit-on-failure", false, "exit 1 as soon as a runtime is failed (its launch failed and its restart policy gave up), so that an orchestrator restarts vmre")
}

func runCommand(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	if code, ok := runAsInit(); ok {
		return code
	}
	// First, so that it outlasts the log's last flush.
	defer surviveBrokenPipe()()
	fs := flag.NewFlagSet("vmre run", flag.ContinueOnError)
	fs.Usage = func() {
		fmt.Fprintln(fs.Output(), `usage: vmre run [flags] [-- PATH [ARGS...]]
       vmre run --config FILE [flags]
       vmre run --attach [flags]

Launches PATH (default: the built-in example VM), runs its handshake, logs its
output and serves the engine's API port (the dashboard at http://LISTEN/, the
vmre.v1 API over gRPC, gRPC-Web and Connect, health and reflection) until
SIGINT or SIGTERM. A launch that fails does not end vmre run: the runtime is
shown as failed and can be restarted. With --config it runs every runtime the
file declares, each with its own settings (the per-launch flags below then do
not apply), and SIGHUP re-reads the file (without --config, SIGHUP is logged
and ignored). With --attach it launches nothing
and registers plugins started elsewhere that handshake with its attach
endpoint.

Stop, restart and reload need the API token: a fresh one is written to a 0600
file whose path is printed, unless --token-file names one (re-read when it
changes, so a rotated token replaces the old one without a restart).

With --tls-cert and --tls-key, the API port and the attach endpoint speak TLS
(HTTP/2 by ALPN, HTTP/1.1 kept); --client-ca makes them require client
certificates. VMs announcing tls://host:port are probed over TLS, trusting
--client-ca (else the system's roots) and presenting --tls-cert.

Exit status: 0 after SIGINT or SIGTERM with every runtime stopped in its grace
period; 1 when the API port or the attach endpoint cannot be opened, or with
--exit-on-failure when a runtime failed; 2 on a usage error or a bad config
file; 3 when a runtime had to be killed during the shutdown (a second SIGINT
or SIGTERM ends the wait for them: they are killed as vmre exits).

flags:`)
		fs.PrintDefaults()
	}
	var ef engineFlags
	ef.register(fs)
	var rf runFlags
	rf.register(fs)
	var attachHealth attachHealthFlags
	attachHealth.register(fs)
	if code, ok := parseFlags(fs, args, stderr); !ok {
		return code
	}
	log, logSink, err := ef.logger(stderr)
	if err != nil {
		fmt.Fprintf(stderr, "vmre run: %v\n", err)
		return exitUsage
	}
	// Runs last: the log's last lines reach stderr before run returns.
	defer logSink.Close()
	stderr = logSink.Direct()
	if err := markInheritedCloexec(); err != nil {
		log.Warn().Err(err).Msg("inherited descriptors may reach plugins")
	}
	if err := rf.checkConfigFlags(fs); err != nil {
		fmt.Fprintf(stderr, "vmre run: %v\n", err)
		return exitUsage
	}
	if err := ef.validate(); err != nil {
		fmt.Fprintf(stderr, "vmre run: %v\n", err)
		return exitUsage
	}
	if rf.apiStreams.maxConns < 1 || rf.apiStreams.idleTimeout <= 0 {
		fmt.Fprintln(stderr, "vmre run: --api-max-conns must be at least 1 and --api-idle-timeout positive")
		return exitUsage
	}
	var file *config.File
	if rf.configFile != "" {
		if file, err = config.Load(rf.configFile); err != nil {
			fmt.Fprintf(stderr, "vmre run: %v\n", err)
			return exitUsage
		}
	}
	tlsCfg, vmTLS, err := rf.tlsConfigs()
	if err != nil {
		fmt.Fprintf(stderr, "vmre run: %v\n", err)
		return exitUsage
	}
	if rf.attachToken != "" && !rf.attach {
		fmt.Fprintln(stderr, "vmre run: --attach-token-file needs --attach")
		return exitUsage
	}
	if rf.attach && len(fs.Args()) > 0 {
		fmt.Fprintln(stderr, "vmre run: --attach launches nothing; drop the plugin command or --attach")
		return exitUsage
	}
	if rf.attach && ef.handshakeAuth != 0 && ef.handshakeAuth != subprocess.HandshakeAuthToken {
		// Attached plugins are not the engine's children: there is no
		// process tree to check a peer against, and "none" would register
		// any local caller.
		fmt.Fprintf(stderr, "vmre run: --attach always requires the token; --handshake-auth %s does not apply\n", ef.handshakeAuth)
		return exitUsage
	}

	ctx, hurry, stopSignals := shutdownSignals(ctx, log)
	defer stopSignals()
	// Subscribed before anything starts, so that a SIGHUP sent early
	// reloads instead of killing vmre. Without a config file there is
	// nothing to re-read, but a SIGHUP (systemctl reload, a terminal
	// hanging up) must not kill vmre and its plugins either.
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	defer signal.Stop(hup)

	apiCfg := api.Config{TokenFile: rf.tokenFile, CORSOrigins: rf.corsOrigins, Log: log, LogLostBytes: logSink.LostBytes, MaxStreams: rf.apiStreams.maxStreams,
		MaxStreamsPerConn: rf.apiStreams.maxStreamsPerConn, MaxCalls: rf.apiStreams.maxCalls, SendTimeout: rf.apiStreams.sendTimeout}
	tokenPath := rf.tokenFile
	if tokenPath == "" {
		if apiCfg.Token, tokenPath, _, err = api.NewTokenFile(""); err != nil {
			fmt.Fprintf(stderr, "vmre run: %v\n", err)
			return exitUsage
		}
		defer removeTokenDir(tokenPath)
	}

	// Bind the API port before launching anything, so a busy port fails
	// fast and leaves no plugin behind.
	lis, err := net.Listen("tcp", rf.listen)
	if err != nil {
		fmt.Fprintf(stderr, "vmre run: listen on %s: %v\n", rf.listen, err)
		return exitFailure
	}

	path, pluginArgs, err := pluginCommand(fs.Args())
	if err != nil {
		_ = lis.Close()
		fmt.Fprintf(stderr, "vmre run: %v\n", err)
		return exitUsage
	}
	subCfg := ef.subprocessConfig(path, log)
	// One count of refused handshake callers, launches' and attaches'.
	subCfg.Refusals = new(server.Refusals)
	subCfg.VMTLS = vmTLS
	eng, err := engine.New(engine.Config{
		Launcher:         engine.NewSubprocessLauncher(*subCfg, nil),
		Log:              log,
		AcceptedVersions: subCfg.AcceptedVersions,
		Refusals:         subCfg.Refusals,
		AttachHealth:     attachHealth.check(),
		VMTLS:            vmTLS,
		NonDumpable:      !rf.dumpable,
	})
	if err != nil {
		_ = lis.Close()
		fmt.Fprintf(stderr, "vmre run: %v\n", err)
		return exitUsage
	}
	// Before any launch: it takes the watchdog's variables out of the
	// environment plugins inherit. It pings through the shutdown too.
	watchdogCtx, stopWatchdog := context.WithCancel(context.WithoutCancel(ctx))
	defer stopWatchdog()
	keepWatchdog(watchdogCtx, log, eng)
	var runner *config.Runner
	if file != nil {
		runner = config.NewRunner(eng, file, log)
	}
	if runner != nil {
		apiCfg.Reloader = runner
	}
	if isLoopback(lis.Addr()) {
		// Only loopback names address a loopback port; anything else is a
		// DNS-rebinding page.
		apiCfg.AllowedHosts = api.LoopbackHosts()
	}
	handler, err := api.New(eng, apiCfg)
	if err != nil {
		_ = lis.Close()
		fmt.Fprintf(stderr, "vmre run: %v\n", err)
		return exitUsage
	}
	srv := server.NewHTTPServer(handler)
	srv.ErrorLog = server.NewErrorLog(log)
	srv.IdleTimeout = rf.apiStreams.idleTimeout
	limited := connlimit.New(lis, rf.apiStreams.maxConns, log)
	limited.EvictBusy(handler.LongestWaitingPeer, busyConnWait)
	srv.ConnState = limited.ConnState
	go func() {
		var err error
		if tlsCfg != nil {
			err = tlsfiles.Serve(srv, limited, tlsCfg)
		} else {
			err = srv.Serve(limited)
		}
		if err != nil && !errors.Is(err, http.ErrServerClosed) {
			log.Error().Err(err).Msg("api server stopped")
		}
	}()
	apiAddr := lis.Addr().String()
	scheme := "http"
	if tlsCfg != nil {
		scheme = "https"
	}
	log.Info().Str("addr", apiAddr).Bool("tls", tlsCfg != nil).Msg("api listening")
	fmt.Fprintf(stdout, "api:       %s://%s/  (dashboard; vmre.v1 over gRPC, gRPC-Web, Connect; health; reflection)\n", scheme, apiAddr)
	fmt.Fprintf(stdout, "api token: %s\n", tokenPath)

	// Watch before launching, so that no failure goes unseen.
	failed := make(chan engine.Runtime, 1)
	if rf.exitOnFailure {
		w := eng.Watch()
		defer w.Close()
		go watchFailures(ctx, w, failed)
	}

	code := exitOK
	var attach *engine.AttachEndpoint
	switch {
	case rf.attach:
		attach, err = startAttach(eng, engine.AttachConfig{Addr: rf.attachListen, TokenFile: rf.attachToken, TLS: tlsCfg},
			firstVersion(subCfg.AcceptedVersions), stdout)
		if err != nil {
			fmt.Fprintf(stderr, "vmre run: %v\n", err)
			code = exitFailure
		}
	case runner != nil:
		runner.Start(ctx)
	default:
		spec := engine.Spec{Name: subCfg.Name, Path: path, Args: pluginArgs}
		if len(fs.Args()) == 0 {
			spec.Name = "examplevm" // not the name of vmre's own binary
		}
		// A failed launch leaves a failed runtime that the API can
		// restart; --exit-on-failure turns it into vmre's exit. The
		// engine logs that failure; a spec it refused has no runtime.
		if rt, err := eng.Launch(ctx, spec); err != nil && ctx.Err() == nil && rt.ID == "" {
			log.Error().Err(err).Str("vm", spec.Name).Msg("launch failed")
		}
	}
	if code == exitOK && ctx.Err() == nil {
		notifyManager(log, daemon.SdNotifyReady+"\nSTATUS=api on "+apiAddr)
	}
	for code == exitOK && ctx.Err() == nil {
		select {
		case <-ctx.Done():
			log.Info().Msg("stopping")
		case <-hup:
			if runner == nil {
				log.Warn().Msg("SIGHUP ignored: there is no --config file to re-read")
				continue
			}
			notifyManager(log, daemon.SdNotifyReloading+"\n"+daemon.SdNotifyMonotonicUsec())
			// Errors are logged by the runner; a bad file changes nothing.
			_, _ = runner.Reload(ctx)
			notifyManager(log, daemon.SdNotifyReady)
		case rt := <-failed:
			log.Error().Str("vm", rt.Name).Str("id", rt.ID).Str("last_error", rt.LastError).Msg("runtime failed; exiting (--exit-on-failure)")
			code = exitFailure
		}
	}

	notifyManager(log, daemon.SdNotifyStopping)
	live := liveRuntimes(eng)
	handler.SetServing(false)
	deadline := ef.stopDeadline()
	if runner != nil {
		deadline = fileStopDeadline(runner.File())
	}
	stopCtx, cancel := context.WithTimeout(hurry, deadline)
	defer cancel()
	if attach != nil {
		if err := attach.Close(stopCtx); err != nil {
			log.Warn().Err(err).Msg("close attach endpoint")
		}
	}
	// Closing the engine stops the runtimes and ends the watch streams, so
	// the HTTP shutdown does not wait for them.
	eng.Close(stopCtx)
	shutdownHTTP(srv)
	if killed := killedRuntimes(eng, live); len(killed) > 0 {
		log.Warn().Strs("vms", killed).Msg("runtimes had to be killed during shutdown")
		if code == exitOK {
			code = exitKilled
		}
	}
	log.Info().Msg("stopped")
	return code
}

// shutdownSignals returns two contexts: run, which the first SIGINT or
// SIGTERM ends (or parent's end), beginning vmre run's shutdown; and hurry,
// which only a second one ends (Ctrl-C again), ending the shutdown's wait
// for the runtimes: those still stopping then die by their parent-death
// signal and the watchdog as vmre exits. stop ends the subscription.
func shutdownSignals(parent context.Context, log zerolog.Logger) (run, hurry context.Context, stop func()) {
	run, endRun := context.WithCancel(parent)
	hurry, endHurry := context.WithCancel(context.WithoutCancel(parent))
	sigs := make(chan os.Signal, 2)
	signal.Notify(sigs, os.Interrupt, syscall.SIGTERM)
	done := make(chan struct{})
	go func() {
		select {
		case <-sigs:
			endRun()
		case <-done:
			return
		}
		select {
		case sig := <-sigs:
			log.Warn().Str("signal", sig.String()).Msg("second signal: not waiting for the runtimes to stop; they are killed as vmre exits")
			endHurry()
		case <-done:
		}
	}()
	return run, hurry, func() {
		signal.Stop(sigs)
		close(done)
		endRun()
		endHurry()
	}
}

// checkConfigFlags refuses what --config cannot be combined with: a plugin
// command, --attach, and the per-launch flags, which the file sets per
// runtime.
func (f *runFlags) checkConfigFlags(fs *flag.FlagSet) error {
	if f.configFile == "" {
		return nil
	}
	if len(fs.Args()) > 0 {
		return errors.New("--config runs the file's runtimes; drop the plugin command or --config")
	}
	if f.attach {
		return errors.New("--config and --attach cannot be combined")
	}
	var set []string
	fs.Visit(func(fl *flag.Flag) {
		if perLaunchFlags[fl.Name] {
			set = append(set, "--"+fl.Name)
		}
	})
	if len(set) > 0 {
		return fmt.Errorf("%s: with --config each runtime's launch settings are fields of the file (see vmre run --help)", strings.Join(set, ", "))
	}
	return nil
}

// fileStopDeadline bounds the shutdown of f's runtimes, which stop in
// parallel: the longest stop sequence among them.
func fileStopDeadline(f *config.File) time.Duration {
	deadline := stopDeadline(vmre.DefaultGracefulTimeout, true)
	for _, rt := range f.Runtimes {
		grace := rt.Spec.Launch.GracefulTimeout
		if grace == 0 {
			grace = vmre.DefaultGracefulTimeout
		}
		deadline = max(deadline, stopDeadline(grace, rt.Spec.Launch.VMShutdown))
	}
	return deadline
}

// perLaunchFlags are the engine flags that are fields of a config file's
// runtimes.
var perLaunchFlags = map[string]bool{
	"protocol-version": true, "handshake-timeout": true, "graceful-timeout": true, "env-var": true,
	"handshake-auth": true, "sha256": true, "env-policy": true, "env-keep": true, "env": true, "vm-shutdown": true,
}

// watchFailures sends the first runtime w shows in state failed on failed,
// then returns; it also returns when ctx is done or w is closed.
func watchFailures(ctx context.Context, w *engine.Watcher, failed chan<- engine.Runtime) {
	for {
		c, err := w.Next(ctx)
		if err != nil {
			return
		}
		rts := c.Snapshot
		if c.Kind == engine.ChangeUpdated {
			rts = []engine.Runtime{c.Runtime}
		}
		for _, rt := range rts {
			if rt.State == engine.StateFailed {
				failed <- rt
				return
			}
		}
	}
}

// liveRuntimes returns the ids of the launched runtimes whose process has
// not ended.
func liveRuntimes(eng *engine.Engine) []string {
	var ids []string
	for _, rt := range eng.List() {
		if !rt.Attached && !rt.State.Ended() {
			ids = append(ids, rt.ID)
		}
	}
	return ids
}

// killedRuntimes returns the names of the runtimes among ids that did not
// exit in their grace period: killed, or still not ended when the
// shutdown's deadline passed.
func killedRuntimes(eng *engine.Engine, ids []string) []string {
	var out []string
	for _, id := range ids {
		rt, _, err := eng.Get(id)
		if err != nil {
			continue // left the history: it ended long before
		}
		if !rt.State.Ended() || (rt.Exit != nil && rt.Exit.Signal == "killed") {
			out = append(out, rt.Name)
		}
	}
	return out
}

// tlsConfigs returns the TLS configuration of the API port and the attach
// endpoint (nil without --tls-cert) and the client side of TLS toward VMs
// announcing tls:// addresses: --client-ca's roots (else the system's) and
// --tls-cert as the client certificate.
func (f *runFlags) tlsConfigs() (server, vm *tls.Config, err error) {
	if (f.tlsCert == "") != (f.tlsKey == "") {
		return nil, nil, errors.New("--tls-cert and --tls-key go together")
	}
	if f.tlsCert == "" {
		if f.clientCA != "" {
			return nil, nil, errors.New("--client-ca needs --tls-cert and --tls-key")
		}
		return nil, nil, nil
	}
	kp, err := tlsfiles.LoadKeyPair(f.tlsCert, f.tlsKey)
	if err != nil {
		return nil, nil, err
	}
	var cas *x509.CertPool
	if f.clientCA != "" {
		if cas, err = tlsfiles.LoadCA(f.clientCA); err != nil {
			return nil, nil, err
		}
	}
	vm = &tls.Config{
		MinVersion: tls.VersionTLS12,
		RootCAs:    cas,
		GetClientCertificate: func(*tls.CertificateRequestInfo) (*tls.Certificate, error) {
			return kp.Certificate()
		},
	}
	return tlsfiles.ServerConfig(kp, cas), vm, nil
}

func isLoopback(addr net.Addr) bool {
	tcp, ok := addr.(*net.TCPAddr)
	return ok && tcp.IP.IsLoopback()
}

// removeTokenDir removes the private directory NewTokenFile created.
func removeTokenDir(tokenPath string) {
	_ = os.RemoveAll(filepath.Dir(tokenPath))
}

// startAttach opens the attach endpoint and prints what a plugin needs.
// Without a token file it generates the token and prints it; with one it
// prints where the token is.
func startAttach(eng *engine.Engine, cfg engine.AttachConfig, version uint32, stdout io.Writer) (*engine.AttachEndpoint, error) {
	secret := "$(cat " + cfg.TokenFile + ")"
	if cfg.TokenFile == "" {
		secret = token.New()
		cfg.Token = secret
	}
	a, err := eng.ServeAttachConfig(cfg)
	if err != nil {
		return nil, err
	}
	fmt.Fprintf(stdout, "attach:    %s  (plugins started elsewhere handshake here; they are watched, not ours to stop)\n", a.Addr())
	fmt.Fprintln(stdout, "  a plugin needs this environment:")
	fmt.Fprintf(stdout, "  %s\n", envLine(a.Addr(), secret))
	if a.TLS() {
		fmt.Fprintf(stdout, "  and, for TLS, %s=CA.pem (and %s=CERT.pem %s=KEY.pem when client certificates are required)\n",
			vmre.EngineCAKey, vmre.EngineCertKey, vmre.EngineKeyKey)
	}
	fmt.Fprintln(stdout, "  or handshake by hand:")
	fmt.Fprintf(stdout, "  %s\n", curlCommand(a.Addr(), secret, version, "127.0.0.1:50001", a.TLS()))
	return a, nil
}

// firstVersion is the version a hand-made handshake announces: the first
// accepted one, or vmre's own when none are set.
func firstVersion(accepted []uint32) uint32 {
	if len(accepted) == 0 {
		return vmre.ProtocolVersion
	}
	return accepted[0]
}

// envLine is the shell line that gives a plugin what it needs to attach to
// the endpoint at addr: "export VMRE_ENGINE_ADDR=... VMRE_HANDSHAKE_TOKEN=...".
func envLine(addr, secret string) string {
	return "export " + vmre.EngineAddressKey + "=" + addr + " " + vmre.HandshakeTokenKey + "=" + secret
}

// curlCommand is a ready-to-paste curl command that performs a handshake
// (Connect protocol, JSON) with the endpoint at addr ("host:port" or
// "unix:/path"), announcing vmAddr and version.
func curlCommand(addr, secret string, version uint32, vmAddr string, useTLS bool) string {
	scheme, target := "http://", addr
	if useTLS {
		scheme = "https://"
	}
	opts := ""
	if path, ok := strings.CutPrefix(addr, engine.UnixAddrPrefix); ok {
		opts, target = "--unix-socket "+path+" ", "localhost"
	}
	if useTLS {
		opts += "--cacert CA.pem "
	}
	return "curl -sS " + opts + "-H 'Content-Type: application/json' -H \"" + vmre.HandshakeTokenHeader + ": " + secret +
		"\" -d '{\"protocolVersion\":" + strconv.FormatUint(uint64(version), 10) + ",\"addr\":\"" + vmAddr +
		"\"}' " + scheme + target + "/vm.runtime.Runtime/Initialize"
}

// pluginCommand returns the plugin to launch: the arguments after "--", or
// this executable's built-in example VM.
func pluginCommand(args []string) (string, []string, error) {
	if len(args) > 0 {
		return args[0], args[1:], nil
	}
	self, err := os.Executable()
	if err != nil {
		return "", nil, fmt.Errorf("find own executable for the example vm: %w", err)
	}
	return self, []string{exampleVMCommand}, nil
}

func shutdownHTTP(srv *http.Server) {
	ctx, cancel := context.WithTimeout(context.Background(), server.ShutdownTimeout)
	defer cancel()
	if err := srv.Shutdown(ctx); err != nil {
		_ = srv.Close()
	}
}
