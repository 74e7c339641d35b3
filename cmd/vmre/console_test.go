package main

import (
	"bytes"
	"strings"
	"testing"

	"github.com/rs/zerolog"
	"github.com/vmre/vmre/logtime"
)

// A plugin line with ESC, CR and a newline reaches the console as one line
// with those characters escaped, and the time has milliseconds.
func TestConsoleEscapesControl(t *testing.T) {
	t.Parallel()
	var buf bytes.Buffer
	log := zerolog.New(consoleWriter(&buf, true)).Hook(&logtime.Hook{})
	log.Error().Str("vm", "x").Str("dump", "goroutine 1\n\tmain.go:1").Msg("\x1b[2J\rINF fake engine line\x00")
	got := buf.String()
	if strings.ContainsAny(got[:len(got)-1], "\x1b\r\n\x00") {
		t.Errorf("console line holds control characters: %q", got)
	}
	for _, want := range []string{`\x1b[2J\rINF fake engine line\x00`, `goroutine 1\n\tmain.go:1`} {
		if !strings.Contains(got, want) {
			t.Errorf("console line %q lacks %q", got, want)
		}
	}
	if len(got) < 13 || got[8] != '.' {
		t.Errorf("console time has no milliseconds: %q", got)
	}
}

// A plugin's own fields, nested under one key, reach the console as their
// JSON text, not as a list of byte values.
func TestConsoleShowsNestedFieldsAsJSON(t *testing.T) {
	t.Parallel()
	var buf bytes.Buffer
	log := zerolog.New(consoleWriter(&buf, true))
	log.Info().RawJSON("fields", []byte(`{"addr":"127.0.0.1:9650","ok":true}`)).Bool("done", true).Msg("vm server listening")
	got := buf.String()
	for _, want := range []string{`fields={"addr":"127.0.0.1:9650","ok":true}`, "done=true"} {
		if !strings.Contains(got, want) {
			t.Errorf("console line %q lacks %q", got, want)
		}
	}
}
