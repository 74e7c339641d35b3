package server

import (
	"bytes"
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/rs/zerolog"
)

// TestErrorLogRateLimited: past ErrorLogPerSecond lines in one second the
// rest are dropped, and the next second's first line counts them.
func TestErrorLogRateLimited(t *testing.T) {
	t.Parallel()
	var buf bytes.Buffer
	now := time.Unix(100, 0)
	w := &errorLogWriter{log: zerolog.New(&buf), now: func() time.Time { return now }}
	for range ErrorLogPerSecond + 5 {
		if _, err := w.Write([]byte("http2: server connection error\n")); err != nil {
			t.Fatal(err)
		}
	}
	now = now.Add(time.Second)
	_, _ = w.Write([]byte("later\n"))
	lines := strings.Split(strings.TrimSpace(buf.String()), "\n")
	if len(lines) != ErrorLogPerSecond+1 {
		t.Fatalf("%d lines written, want %d:\n%s", len(lines), ErrorLogPerSecond+1, buf.String())
	}
	var last struct {
		Level      string `json:"level"`
		Message    string `json:"message"`
		Suppressed int    `json:"suppressed"`
	}
	if err := json.Unmarshal([]byte(lines[len(lines)-1]), &last); err != nil {
		t.Fatal(err)
	}
	if last.Level != "warn" || last.Message != "later" || last.Suppressed != 5 {
		t.Errorf("last line = %+v, want warn, \"later\", suppressed 5", last)
	}
}
