package logsink_test

import (
	"os"

	"github.com/rs/zerolog"
	"github.com/vmre/vmre/logsink"
)

// A logger writing to stdout through a Writer: the info event waits in the
// buffer, the warning is written at once, with the info event before it.
func ExampleWriter() {
	sink := logsink.New(os.Stdout, logsink.DefaultLimit, logsink.DefaultInterval)
	defer sink.Close() // flushes: run it on every return path

	log := zerolog.New(sink)
	log.Info().Msg("buffered")
	log.Warn().Msg("written at once")
	// Output:
	// {"level":"info","message":"buffered"}
	// {"level":"warn","message":"written at once"}
}
