package main

import (
	"bytes"
	"encoding/json"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/rs/zerolog"
	"github.com/vmre/vmre/internal/syncbuf"
	"github.com/vmre/vmre/logsink"
)

// testLogger is the command's logger of format and level, writing into a
// buffer it returns with it.
func testLogger(t *testing.T, format, level string) (zerolog.Logger, *logsink.Writer, *syncbuf.Buffer) {
	t.Helper()
	rec := new(syncbuf.Buffer)
	f := logFlags{logFormat: format, logLevel: level}
	log, sink, err := f.logger(rec)
	if err != nil {
		t.Fatal(err)
	}
	return log, sink, rec
}

// TestLoggerConsoleFlushesWarn: the console format keeps the urgency of
// warn and above.
func TestLoggerConsoleFlushesWarn(t *testing.T) {
	t.Parallel()
	log, sink, rec := testLogger(t, "console", "debug")
	defer sink.Close()
	log.Info().Msg("routine")
	if got := rec.String(); got != "" {
		t.Fatalf("info written at once: %q", got)
	}
	log.Warn().Msg("look here")
	got := rec.String()
	if !strings.Contains(got, "routine") || !strings.Contains(got, "look here") || strings.Index(got, "routine") > strings.Index(got, "look here") {
		t.Fatalf("after a warning: %q, want both lines in order", got)
	}
}

// TestDoctorFlushesLogAtExit: the doctor's last event, logged just before
// it returns, is on stderr when it has returned.
func TestDoctorFlushesLogAtExit(t *testing.T) {
	t.Parallel()
	code, _, errOut := vmreCmd(t, "doctor", "--log-level", "debug", "--log-format", "json", "--", os.Args[0], exampleVMCommand)
	if code != exitOK {
		t.Fatalf("doctor exit code %d", code)
	}
	if last := lastLogMessage(errOut); last != "vm process stopped" {
		t.Errorf("last log message %q, want %q (log not flushed at exit?)", last, "vm process stopped")
	}
}

// TestLoggerTimestamp: the engine's logger stamps every event with the
// current time, in zerolog's field and format.
func TestLoggerTimestamp(t *testing.T) {
	t.Parallel()
	log, sink, rec := testLogger(t, "json", "info")
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
