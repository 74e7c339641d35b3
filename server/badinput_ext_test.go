package server_test

import (
	"net/http"
	"strings"
	"testing"

	"github.com/vmre/vmre/server"
)

// TestBadRequests sends malformed handshakes the way a person with curl or
// a buggy plugin would, and proves that each gets the right HTTP status and
// Connect code with a message naming the problem, that requests refused
// before the Initializer never reach it, and that a good request on the
// same server still succeeds afterwards.
func TestBadRequests(t *testing.T) {
	t.Parallel()
	engine := &testEngine{}
	engineAddr := startServer(t, engine, nil)

	oversized := `{"protocolVersion":42,"addr":"` + strings.Repeat("h", server.MaxRequestBytes) + `:1"}`
	if len(oversized) <= server.MaxRequestBytes {
		t.Fatalf("oversized body is only %d bytes", len(oversized))
	}
	const alreadyAddr = "127.0.0.1:50077"
	if status, body := post(t.Context(), t, engineAddr, "application/json",
		`{"protocolVersion":42,"addr":"`+alreadyAddr+`"}`); status != http.StatusOK {
		t.Fatalf("first handshake of %s: HTTP %d %s", alreadyAddr, status, body)
	}

	tests := []struct {
		name        string
		contentType string
		body        string
		wantStatus  int
		wantCode    string
		wantMsg     []string
		// reachesInitializer: the request is well-formed and the
		// Initializer itself refuses it.
		reachesInitializer bool
	}{
		{
			name: "empty addr", contentType: "application/json",
			body:       `{"protocolVersion":42,"addr":""}`,
			wantStatus: http.StatusBadRequest, wantCode: "invalid_argument",
			wantMsg: []string{"invalid request", "addr is empty, want host:port"},
		},
		{
			name: "missing addr", contentType: "application/json",
			body:       `{"protocolVersion":42}`,
			wantStatus: http.StatusBadRequest, wantCode: "invalid_argument",
			wantMsg: []string{"addr is empty"},
		},
		{
			name: "addr without port", contentType: "application/json",
			body:       `{"protocolVersion":42,"addr":"nohost"}`,
			wantStatus: http.StatusBadRequest, wantCode: "invalid_argument",
			wantMsg: []string{`addr "nohost" is not host:port`},
		},
		{
			name: "addr with empty port", contentType: "application/json",
			body:       `{"protocolVersion":42,"addr":"host:"}`,
			wantStatus: http.StatusBadRequest, wantCode: "invalid_argument",
			wantMsg: []string{`addr "host:" has no valid port (1-65535)`},
		},
		{
			name: "addr port out of range", contentType: "application/json",
			body:       `{"protocolVersion":42,"addr":"host:99999"}`,
			wantStatus: http.StatusBadRequest, wantCode: "invalid_argument",
			wantMsg: []string{`addr "host:99999" has no valid port (1-65535)`},
		},
		{
			name: "addr port zero", contentType: "application/json",
			body:       `{"protocolVersion":42,"addr":"127.0.0.1:0"}`,
			wantStatus: http.StatusBadRequest, wantCode: "invalid_argument",
			wantMsg: []string{"has no valid port"},
		},
		{
			name: "addr without host", contentType: "application/json",
			body:       `{"protocolVersion":42,"addr":":80"}`,
			wantStatus: http.StatusBadRequest, wantCode: "invalid_argument",
			wantMsg: []string{`addr ":80" has no host`},
		},
		{
			name: "addr with a url", contentType: "application/json",
			body:       `{"protocolVersion":42,"addr":"http://host:80"}`,
			wantStatus: http.StatusBadRequest, wantCode: "invalid_argument",
			wantMsg: []string{`addr "http://host:80"`},
		},
		{
			name: "zero protocol version", contentType: "application/json",
			body:       `{"addr":"127.0.0.1:50001"}`,
			wantStatus: http.StatusBadRequest, wantCode: "invalid_argument",
			wantMsg: []string{"protocol_version is 0"},
		},
		{
			name: "malformed json", contentType: "application/json",
			body:       `{"protocolVersion":42,`,
			wantStatus: http.StatusBadRequest, wantCode: "invalid_argument",
			wantMsg: []string{"unmarshal", "InitializeRequest"},
		},
		{
			name: "json of the wrong type", contentType: "application/json",
			body:       `{"protocolVersion":"forty-two","addr":"127.0.0.1:50001"}`,
			wantStatus: http.StatusBadRequest, wantCode: "invalid_argument",
			wantMsg: []string{"unmarshal"},
		},
		{
			name: "empty body", contentType: "application/json",
			body:       ``,
			wantStatus: http.StatusBadRequest, wantCode: "invalid_argument",
			wantMsg: []string{"zero-length payload"},
		},
		{
			name: "wrong content type", contentType: "text/plain",
			body:       `{"protocolVersion":42,"addr":"127.0.0.1:50001"}`,
			wantStatus: http.StatusUnsupportedMediaType, wantCode: "invalid_argument",
			wantMsg: []string{`unsupported Content-Type "text/plain"`, "application/json"},
		},
		{
			// What curl sends with -d and no -H.
			name: "form content type", contentType: "application/x-www-form-urlencoded",
			body:       `{"protocolVersion":42,"addr":"127.0.0.1:50001"}`,
			wantStatus: http.StatusUnsupportedMediaType, wantCode: "invalid_argument",
			wantMsg: []string{`unsupported Content-Type "application/x-www-form-urlencoded"`},
		},
		{
			name: "no content type", contentType: "",
			body:       `{"protocolVersion":42,"addr":"127.0.0.1:50001"}`,
			wantStatus: http.StatusUnsupportedMediaType, wantCode: "invalid_argument",
			wantMsg: []string{"request has no Content-Type"},
		},
		{
			name: "oversized body", contentType: "application/json",
			body:       oversized,
			wantStatus: http.StatusTooManyRequests, wantCode: "resource_exhausted",
			wantMsg: []string{"larger than configured max 4096"},
		},
		{
			name: "version mismatch", contentType: "application/json",
			body:       `{"protocolVersion":41,"addr":"127.0.0.1:50001"}`,
			wantStatus: http.StatusBadRequest, wantCode: "failed_precondition",
			wantMsg:            []string{"protocol version mismatch engine: 42 vm: 41"},
			reachesInitializer: true,
		},
		{
			name: "second initialize", contentType: "application/json",
			body:       `{"protocolVersion":42,"addr":"` + alreadyAddr + `"}`,
			wantStatus: http.StatusConflict, wantCode: "already_exists",
			wantMsg:            []string{"already initialized", alreadyAddr},
			reachesInitializer: true,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			before := engine.calls.Load()
			status, body := post(t.Context(), t, engineAddr, tt.contentType, tt.body)
			if status != tt.wantStatus {
				t.Errorf("HTTP status = %d, want %d (body %s)", status, tt.wantStatus, body)
			}
			ce := parseCurlError(t, status, body)
			if ce.Code != tt.wantCode {
				t.Errorf("code = %q, want %q (message %q)", ce.Code, tt.wantCode, ce.Message)
			}
			for _, want := range tt.wantMsg {
				if !strings.Contains(ce.Message, want) {
					t.Errorf("message %q does not contain %q", ce.Message, want)
				}
			}
			// Other subtests run in parallel, so only the rise of the count
			// is checked here; TestBadRequestsNeverReachInitializer checks
			// that refused requests never reach the Initializer.
			if tt.reachesInitializer && engine.calls.Load() == before {
				t.Error("the Initializer was not called")
			}

			// The server keeps serving: a good request still succeeds.
			vmAddr := nextVMAddr()
			if err := curlInitialize(t.Context(), t, engineAddr, engineVersion, vmAddr); err != nil {
				t.Fatalf("good request after %s: %v", tt.name, err)
			}
			if !engine.wasAccepted(vmAddr) {
				t.Errorf("good request after %s did not reach the Initializer", tt.name)
			}
		})
	}
}

// TestBadRequestsNeverReachInitializer proves that requests the server
// refuses for their form are never passed to the Initializer.
func TestBadRequestsNeverReachInitializer(t *testing.T) {
	t.Parallel()
	engine := &testEngine{}
	engineAddr := startServer(t, engine, nil)
	bodies := []struct{ contentType, body string }{
		{"application/json", `{"protocolVersion":42,"addr":""}`},
		{"application/json", `{"protocolVersion":42,"addr":"nohost"}`},
		{"application/json", `{"addr":"127.0.0.1:50001"}`},
		{"application/json", `{"protocolVersion":42,`},
		{"text/plain", `{"protocolVersion":42,"addr":"127.0.0.1:50001"}`},
		{"application/json", `{"protocolVersion":42,"addr":"` + strings.Repeat("h", 2*server.MaxRequestBytes) + `:1"}`},
	}
	for _, b := range bodies {
		if status, _ := post(t.Context(), t, engineAddr, b.contentType, b.body); status == http.StatusOK {
			t.Errorf("%s %.40q: HTTP 200, want an error", b.contentType, b.body)
		}
	}
	if n := engine.calls.Load(); n != 0 {
		t.Errorf("Initializer called %d times, want 0", n)
	}
}
