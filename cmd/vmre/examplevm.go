package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"

	"github.com/rs/zerolog"
	"github.com/vmre/vmre/examples/examplevm"
)

// exampleVM runs the built-in example VM; vmre launches itself with this
// hidden command when `vmre run` is given no plugin.
func exampleVM(ctx context.Context, _ []string, stdout, stderr io.Writer) int {
	ctx, stop := signal.NotifyContext(ctx, os.Interrupt, syscall.SIGTERM)
	defer stop()
	log := zerolog.New(stdout).With().Timestamp().Logger()
	if err := examplevm.Run(ctx, log, examplevm.Config{}); err != nil {
		fmt.Fprintf(stderr, "example vm: %v\n", err)
		return exitFailure
	}
	return exitOK
}
