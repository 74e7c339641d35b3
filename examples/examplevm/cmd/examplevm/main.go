// Command examplevm runs the example VM plugin on its own, for engines that
// launch a plugin by path (vmre, avalanchego, luxd).
package main

import (
	"context"
	"os"
	"os/signal"
	"syscall"

	"github.com/rs/zerolog"
	"github.com/vmre/vmre/examples/examplevm"
	"github.com/vmre/vmre/logtime"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, os.Interrupt)
	defer stop()
	// Times with milliseconds, as in the engine's own log.
	log := zerolog.New(os.Stdout).Hook(&logtime.Hook{})
	if err := examplevm.Run(ctx, log, examplevm.Config{}); err != nil {
		log.Error().Err(err).Msg("example vm failed")
		os.Exit(1)
	}
}
