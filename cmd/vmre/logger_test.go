package main

import (
	"os"
	"strings"
	"testing"
)

// TestLoggerConsoleFlushesWarn: the console format keeps the urgency of
// warn and above.
func TestLoggerConsoleFlushesWarn(t *testing.T) {
	t.Parallel()
	rec := new(safeBuffer)
	f := logFlags{logFormat: "console", logLevel: "debug"}
	log, sink, err := f.logger(rec)
	if err != nil {
		t.Fatal(err)
	}
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
