package main

import (
	"os"
	"strings"
	"sync"
	"testing"
)

// recorder is an io.Writer that keeps every Write call separately and
// signals each one.
type recorder struct {
	mu     sync.Mutex
	writes []string
	wrote  chan struct{} // one token per Write, never blocks
}

func newRecorder() *recorder { return &recorder{wrote: make(chan struct{}, 1<<16)} }

func (r *recorder) Write(p []byte) (int, error) {
	r.mu.Lock()
	r.writes = append(r.writes, string(p))
	r.mu.Unlock()
	select {
	case r.wrote <- struct{}{}:
	default:
	}
	return len(p), nil
}

func (r *recorder) calls() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]string(nil), r.writes...)
}

func (r *recorder) all() string { return strings.Join(r.calls(), "") }

// TestLoggerConsoleFlushesWarn: the console format keeps the urgency of
// warn and above.
func TestLoggerConsoleFlushesWarn(t *testing.T) {
	t.Parallel()
	rec := newRecorder()
	f := logFlags{logFormat: "console", logLevel: "debug"}
	log, sink, err := f.logger(rec)
	if err != nil {
		t.Fatal(err)
	}
	defer sink.Close()
	log.Info().Msg("routine")
	if got := rec.all(); got != "" {
		t.Fatalf("info written at once: %q", got)
	}
	log.Warn().Msg("look here")
	got := rec.all()
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
