package main

import (
	"bytes"
	"encoding/json"
	"testing"
	"time"

	"github.com/rs/zerolog"
)

// TestLoggerTimestamp: the engine's logger stamps every event with the
// current time, in zerolog's field and format.
func TestLoggerTimestamp(t *testing.T) {
	t.Parallel()
	rec := new(safeBuffer)
	f := logFlags{logFormat: "json", logLevel: "info"}
	log, sink, err := f.logger(rec)
	if err != nil {
		t.Fatal(err)
	}
	before := time.Now().Truncate(time.Second)
	log.Info().Msg("one")
	log.Info().Msg("two")
	if err := sink.Close(); err != nil {
		t.Fatal(err)
	}
	after := time.Now()
	lines := bytes.Split(bytes.TrimSpace([]byte(rec.String())), []byte("\n"))
	if len(lines) != 2 {
		t.Fatalf("got %d events: %q", len(lines), rec.String())
	}
	for _, line := range lines {
		var ev map[string]any
		if err := json.Unmarshal(line, &ev); err != nil {
			t.Fatal(err)
		}
		s, _ := ev[zerolog.TimestampFieldName].(string)
		ts, err := time.Parse(time.RFC3339, s)
		if err != nil || ts.Before(before) || ts.After(after) {
			t.Errorf("time %q (%v) not in [%v, %v]: %s", s, err, before, after, line)
		}
	}
}
