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
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, os.Interrupt)
	defer stop()
	log := zerolog.New(os.Stdout).With().Timestamp().Logger()
	if err := examplevm.Run(ctx, log, examplevm.Config{}); err != nil {
		log.Error().Err(err).Msg("example vm failed")
		os.Exit(1)
	}
}
