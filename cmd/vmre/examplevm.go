package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"

	"github.com/rs/zerolog"
	"github.com/vmre/vmre/client"
	"github.com/vmre/vmre/examples/examplevm"
	"github.com/vmre/vmre/logtime"
)

// exampleVM runs the built-in example VM; vmre launches itself with this
// hidden command when `vmre run` is given no plugin. With --keep-attached
// it is a VM started outside the engine that keeps itself attached
// (examplevm.Config.KeepAttached).
func exampleVM(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("vmre "+exampleVMCommand, flag.ContinueOnError)
	keep := fs.Bool("keep-attached", false, "attach with client.KeepAttached: retry, and register again after an engine restart")
	refresh := fs.Duration("attach-refresh", client.DefaultRefresh, "with --keep-attached, the interval between refreshing handshakes")
	if code, ok := parseFlags(fs, args, stderr); !ok {
		return code
	}
	ctx, stop := signal.NotifyContext(ctx, os.Interrupt, syscall.SIGTERM)
	defer stop()
	// Times with milliseconds, as in the engine's own log.
	log := zerolog.New(stdout).Hook(&logtime.Hook{})
	if err := examplevm.Run(ctx, log, examplevm.Config{KeepAttached: *keep, AttachRefresh: *refresh}); err != nil {
		fmt.Fprintf(stderr, "example vm: %v\n", err)
		return exitFailure
	}
	return exitOK
}
