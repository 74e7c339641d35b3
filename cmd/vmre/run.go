package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/signal"
	"path/filepath"
	"syscall"
	"time"

	"github.com/vmre/vmre/api"
	"github.com/vmre/vmre/engine"
	"github.com/vmre/vmre/server"
)

const defaultListen = "127.0.0.1:9660"

// runFlags are the flags of `vmre run` beyond the shared engine flags.
type runFlags struct {
	listen       string
	tokenFile    string
	corsOrigins  stringList
	attach       bool
	attachListen string
}

func (f *runFlags) register(fs *flag.FlagSet) {
	fs.StringVar(&f.listen, "listen", defaultListen, "address of the engine's API port: dashboard, vmre.v1 API, health and reflection")
	fs.StringVar(&f.tokenFile, "token-file", "", "read the API token (stop and restart need it) from this file, mode 0600, instead of generating one")
	fs.Var(&f.corsOrigins, "cors-origin", "a browser origin besides the dashboard's own allowed to call the API, as scheme://host[:port] (repeatable; default: same origin only)")
	fs.BoolVar(&f.attach, "attach", false, "launch nothing: open a handshake endpoint and register every plugin that handshakes there with its token")
	fs.StringVar(&f.attachListen, "attach-listen", "127.0.0.1:0", "address of the attach handshake endpoint (with --attach)")
}

func runCommand(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("vmre run", flag.ContinueOnError)
	fs.Usage = func() {
		fmt.Fprintln(fs.Output(), `usage: vmre run [flags] [-- PATH [ARGS...]]
       vmre run --attach [flags]

Launches PATH (default: the built-in example VM), runs its handshake, logs its
output and serves the engine's API port (the dashboard at http://LISTEN/, the
vmre.v1 API over gRPC, gRPC-Web and Connect, health and reflection) until
SIGINT or SIGTERM. With --attach it launches nothing and registers plugins
started elsewhere that handshake with its attach endpoint.

Stop and restart need the API token: a fresh one is written to a 0600 file
whose path is printed, unless --token-file names one.

flags:`)
		fs.PrintDefaults()
	}
	var ef engineFlags
	ef.register(fs)
	var rf runFlags
	rf.register(fs)
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
	stderr = logSink.direct()
	if err := ef.validate(); err != nil {
		fmt.Fprintf(stderr, "vmre run: %v\n", err)
		return exitUsage
	}
	if rf.attach && len(fs.Args()) > 0 {
		fmt.Fprintln(stderr, "vmre run: --attach launches nothing; drop the plugin command or --attach")
		return exitUsage
	}
	if rf.attach && ef.handshakeAuth != "" && ef.handshakeAuth != "token" {
		// Attached plugins are not the engine's children: there is no
		// process tree to check a peer against, and "none" would register
		// any local caller.
		fmt.Fprintf(stderr, "vmre run: --attach always requires the token; --handshake-auth %s does not apply\n", ef.handshakeAuth)
		return exitUsage
	}

	ctx, stopSignals := signal.NotifyContext(ctx, os.Interrupt, syscall.SIGTERM)
	defer stopSignals()

	token, tokenPath, err := apiToken(rf.tokenFile)
	if err != nil {
		fmt.Fprintf(stderr, "vmre run: %v\n", err)
		return exitUsage
	}
	if rf.tokenFile == "" {
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
	eng, err := engine.New(engine.Config{
		Launcher:         engine.NewSubprocessLauncher(*subCfg, nil),
		Log:              log,
		AcceptedVersions: subCfg.AcceptedVersions,
	})
	if err != nil {
		_ = lis.Close()
		fmt.Fprintf(stderr, "vmre run: %v\n", err)
		return exitUsage
	}
	apiCfg := api.Config{Token: token, CORSOrigins: rf.corsOrigins, Log: log}
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
	go func() {
		if err := srv.Serve(lis); err != nil && !errors.Is(err, http.ErrServerClosed) {
			log.Error().Err(err).Msg("api server stopped")
		}
	}()
	apiAddr := lis.Addr().String()
	log.Info().Str("addr", apiAddr).Msg("api listening")
	fmt.Fprintf(stdout, "api:       http://%s/  (dashboard; vmre.v1 over gRPC, gRPC-Web, Connect; health; reflection)\n", apiAddr)
	fmt.Fprintf(stdout, "api token: %s\n", tokenPath)

	code := exitOK
	var attach *engine.AttachEndpoint
	if rf.attach {
		attach, err = startAttach(eng, rf.attachListen, stdout)
		if err != nil {
			fmt.Fprintf(stderr, "vmre run: %v\n", err)
			code = exitFailure
		}
	} else {
		spec := engine.Spec{Name: subCfg.Name, Path: path, Args: pluginArgs}
		if len(fs.Args()) == 0 {
			spec.Name = "examplevm" // not the name of vmre's own binary
		}
		if _, err := eng.Launch(ctx, spec); err != nil && ctx.Err() == nil {
			log.Error().Err(err).Str("vm", spec.Name).Msg("launch failed")
			code = exitFailure
		}
	}
	if code == exitOK {
		<-ctx.Done()
		log.Info().Msg("stopping")
	}

	handler.SetServing(false)
	stopCtx, cancel := context.WithTimeout(context.WithoutCancel(ctx), ef.stopDeadline())
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
	log.Info().Msg("stopped")
	return code
}

// apiToken returns the API token and the path of the file holding it: read
// from tokenFile, or freshly generated into a new private file.
func apiToken(tokenFile string) (token, path string, err error) {
	if tokenFile != "" {
		token, err := api.ReadTokenFile(tokenFile)
		return token, tokenFile, err
	}
	token, path, _, err = api.NewTokenFile("")
	return token, path, err
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
func startAttach(eng *engine.Engine, addr string, stdout io.Writer) (*engine.AttachEndpoint, error) {
	token, err := engine.NewToken()
	if err != nil {
		return nil, err
	}
	a, err := eng.ServeAttach(addr, token)
	if err != nil {
		return nil, err
	}
	fmt.Fprintf(stdout, "attach:    %s  (plugins started elsewhere handshake here; they are watched, not ours to stop)\n", a.Addr())
	fmt.Fprintln(stdout, "  a plugin needs this environment:")
	fmt.Fprintf(stdout, "  %s\n", a.EnvLine())
	fmt.Fprintln(stdout, "  or handshake by hand:")
	fmt.Fprintf(stdout, "  %s\n", a.CurlCommand("127.0.0.1:50001"))
	return a, nil
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
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	if err := srv.Shutdown(ctx); err != nil {
		_ = srv.Close()
	}
}
