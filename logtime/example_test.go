package logtime_test

import (
	"context"
	"os"
	"time"

	"github.com/rs/zerolog"
	"github.com/vmre/vmre/logtime"
)

// A logger stamped by the hook. An event whose context carries a time (the
// output bridge gives every plugin line the time it was read) gets that
// time; any other event gets the clock's.
func ExampleHook() {
	log := zerolog.New(os.Stdout).Hook(&logtime.Hook{})

	read := time.Date(2026, 11, 22, 12, 0, 0, 0, time.UTC)
	log.Info().Ctx(logtime.WithTime(context.Background(), read)).Msg("a plugin line")
	// Output: {"level":"info","time":"2026-11-22T12:00:00.000Z","message":"a plugin line"}
}
