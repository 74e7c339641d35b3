//go:build unix

package main

import (
	"encoding/json"
	"io"
	"net"
	"strings"
	"syscall"
	"testing"
	"time"
)

// TestRunLogsHTTPErrorsAsJSON sends an HTTP/2 connection whose first frame
// is not SETTINGS to the API port. net/http logs that itself; with
// --log-format json the line must be JSON at warn, not raw text on stderr.
func TestRunLogsHTTPErrorsAsJSON(t *testing.T) {
	p := startRun(t)
	addr := p.waitFor(t, "api listening", "").Addr
	conn, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	// The client preface, then a PING frame (length 8, type 6, stream 0)
	// where SETTINGS must come first: a connection error.
	frame := append([]byte("PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"), 0, 0, 8, 6, 0, 0, 0, 0, 0)
	if _, err := conn.Write(append(frame, make([]byte, 8)...)); err != nil {
		t.Fatal(err)
	}
	_, _ = io.Copy(io.Discard, conn)        // the server closes the connection after logging
	timeout := time.After(60 * time.Second) // a bound for a hung test, not a timing assertion
	for found := false; !found; {
		select {
		case e, ok := <-p.entries:
			if !ok {
				t.Fatalf("no JSON line for net/http's error; log:\n%s", p.log.String())
			}
			if strings.Contains(e.Message, "http2: server connection error") {
				found = true
				if e.Level != "warn" {
					t.Errorf("net/http's line logged at %q, want warn", e.Level)
				}
			}
		case <-timeout:
			t.Fatalf("no JSON line for net/http's error; log:\n%s", p.log.String())
		}
	}
	p.signal(t, syscall.SIGTERM)
	if code := p.exitCode(t); code != 0 {
		t.Errorf("exit code %d after SIGTERM", code)
	}
	for line := range strings.SplitSeq(strings.TrimSpace(p.log.String()), "\n") {
		if !json.Valid([]byte(line)) {
			t.Errorf("non-JSON line on stderr with --log-format json: %q", line)
		}
	}
}
