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
	"syscall"
	"time"

	"connectrpc.com/grpchealth"
	"github.com/vmre/vmre"
	"github.com/vmre/vmre/server"
	"github.com/vmre/vmre/subprocess"
)

const defaultListen = "127.0.0.1:9660"

func runCommand(ctx context.Context, args []string, _, stderr io.Writer) int {
	fs := flag.NewFlagSet("vmre run", flag.ContinueOnError)
	fs.Usage = func() {
		fmt.Fprintln(fs.Output(), "usage: vmre run [flags] [-- PATH [ARGS...]]\n\nLaunches PATH (default: the built-in example VM), runs its handshake, logs its\noutput and serves the engine's API port until SIGINT or SIGTERM.\n\nflags:")
		fs.PrintDefaults()
	}
	var ef engineFlags
	ef.register(fs)
	listen := fs.String("listen", defaultListen, "address of the engine's API port")
	if code, ok := parseFlags(fs, args, stderr); !ok {
		return code
	}
	log, err := ef.logger(stderr)
	if err != nil {
		fmt.Fprintf(stderr, "vmre run: %v\n", err)
		return exitUsage
	}
	path, pluginArgs, err := pluginCommand(fs.Args())
	if err != nil {
		fmt.Fprintf(stderr, "vmre run: %v\n", err)
		return exitUsage
	}

	ctx, stopSignals := signal.NotifyContext(ctx, os.Interrupt, syscall.SIGTERM)
	defer stopSignals()

	// Bind the API port before launching anything, so a busy port fails
	// fast and leaves no plugin behind.
	lis, err := net.Listen("tcp", *listen)
	if err != nil {
		fmt.Fprintf(stderr, "vmre run: listen on %s: %v\n", *listen, err)
		return exitFailure
	}
	mux := http.NewServeMux()
	mux.Handle(grpchealth.NewHandler(grpchealth.NewStaticChecker()))
	api := server.NewHTTPServer(mux)
	go func() {
		if err := api.Serve(lis); err != nil && !errors.Is(err, http.ErrServerClosed) {
			log.Error().Err(err).Msg("api server stopped")
		}
	}()
	defer shutdownHTTP(api)
	log.Info().Str("addr", lis.Addr().String()).Msg("api listening")

	manager := vmre.NewManager()
	cfg := ef.subprocessConfig(path, log)
	status, stopper, err := subprocess.Bootstrap(ctx, subprocess.NewCmd(path, pluginArgs...), cfg)
	if err != nil {
		if ctx.Err() != nil {
			return exitOK
		}
		log.Error().Err(err).Str("vm", cfg.Name).Msg("launch failed")
		return exitFailure
	}
	manager.TrackRuntime(stopper)
	log.Info().Str("vm", cfg.Name).Int("pid", status.Pid).Str("addr", status.Addr).
		Uint32("protocol_version", status.ProtocolVersion).Dur("handshake", status.HandshakeDuration).
		Msg("runtime running")

	code := exitOK
	select {
	case <-ctx.Done():
		log.Info().Msg("stopping")
	case <-doneOf(stopper):
		log.Error().Str("vm", cfg.Name).Int("pid", status.Pid).Msg("runtime exited on its own")
		code = exitFailure
	}
	stopCtx, cancel := context.WithTimeout(context.WithoutCancel(ctx), ef.gracefulTimeout+2*time.Second)
	defer cancel()
	manager.Stop(stopCtx)
	log.Info().Msg("stopped")
	return code
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

// doneOf returns a channel closed when the runtime's process exits, or nil
// (never ready) if the Stopper does not report exits.
func doneOf(s vmre.Stopper) <-chan struct{} {
	if r, ok := s.(vmre.Runtime); ok {
		return r.Done()
	}
	return nil
}

func shutdownHTTP(srv *http.Server) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	if err := srv.Shutdown(ctx); err != nil {
		_ = srv.Close()
	}
}
