package server_test

// Fuzz targets for the handshake's input handling. Seed corpora live in
// testdata/fuzz/<Target>/; CI runs each target for a short fixed time:
//
//	go test -run=^$ -fuzz=FuzzValidateAddr -fuzztime=10s ./server/
//	go test -run=^$ -fuzz=FuzzInitializeRequest -fuzztime=10s ./server/

import (
	"bytes"
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"net"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
	"testing"

	"github.com/vmre/vmre"
	"github.com/vmre/vmre/server"
)

// FuzzValidateAddr: ValidateAddr never panics, refuses with
// vmre.ErrInvalidRequest and a bounded message, and whatever it accepts
// really is a host:port (with or without the tls:// prefix) with a clean
// host and a port in 1..65535.
func FuzzValidateAddr(f *testing.F) {
	f.Add("127.0.0.1:9650")
	f.Add("[::1]:1")
	f.Add("tls://vm.example:9650")
	f.Fuzz(func(t *testing.T, addr string) {
		err := server.ValidateAddr(addr)
		if err != nil {
			if !errors.Is(err, vmre.ErrInvalidRequest) {
				t.Fatalf("ValidateAddr(%q) = %v, does not wrap ErrInvalidRequest", addr, err)
			}
			if n := len(err.Error()); n > 2048 {
				t.Fatalf("ValidateAddr(%q): error message of %d bytes echoes too much input", addr, n)
			}
			if server.ValidateRequest(vmre.ProtocolVersion, addr) == nil {
				t.Fatalf("ValidateRequest accepts %q, which ValidateAddr refuses", addr)
			}
			return
		}
		addr, _ = vmre.CutTLSAddr(addr)
		host, port, splitErr := net.SplitHostPort(addr)
		if splitErr != nil {
			t.Fatalf("accepted %q, which is not host:port: %v", addr, splitErr)
		}
		if host == "" || len(addr) > 253+1+5 {
			t.Fatalf("accepted %q: empty host or too long", addr)
		}
		for _, r := range host {
			if r <= ' ' || r == 0x7f || r == '/' || r == '@' {
				t.Fatalf("accepted %q with %q in its host", addr, r)
			}
		}
		if n, err := strconv.ParseUint(port, 10, 16); err != nil || n == 0 {
			t.Fatalf("accepted %q with port %q", addr, port)
		}
		if server.ValidateRequest(vmre.ProtocolVersion, addr) != nil {
			t.Fatalf("ValidateRequest refuses %q, which ValidateAddr accepts", addr)
		}
		if server.ValidateRequest(0, addr) == nil {
			t.Fatalf("ValidateRequest accepts protocol version 0 with %q", addr)
		}
	})
}

// fuzzContentTypes are the content types FuzzInitializeRequest's kind
// selects from: every protocol and codec the handler serves, and one it
// refuses.
var fuzzContentTypes = []string{
	"application/json",
	"application/proto",
	"application/grpc",
	"application/grpc+json",
	"application/grpc-web+proto",
	"application/grpc-web+json",
	"text/plain",
}

// fuzzEngine accepts everything and records what reached it.
type fuzzEngine struct {
	mu    sync.Mutex
	calls []fuzzCall
}

type fuzzCall struct {
	version uint32
	addr    string
}

func (e *fuzzEngine) Initialize(_ context.Context, version uint32, addr string) error {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.calls = append(e.calls, fuzzCall{version, addr})
	return nil
}

func (e *fuzzEngine) take() []fuzzCall {
	e.mu.Lock()
	defer e.mu.Unlock()
	c := e.calls
	e.calls = nil
	return c
}

// FuzzInitializeRequest sends arbitrary bodies, under every protocol's
// content type, through the real handler (server.NewHandler) in memory.
// The handler never panics; a request reaches the Initializer only if it
// decoded to a valid (protocol_version, addr); and the answer is a success
// exactly when it did.
func FuzzInitializeRequest(f *testing.F) {
	f.Add(uint8(0), []byte(`{"protocolVersion":42,"addr":"127.0.0.1:9650"}`))
	f.Add(uint8(2), grpcFrame([]byte{0x08, 0x2a, 0x12, 0x0e, '1', '2', '7', '.', '0', '.', '0', '.', '1', ':', '9', '6', '5', '0'}))
	engine := &fuzzEngine{}
	path, handler := server.NewHandler(engine)
	f.Fuzz(func(t *testing.T, kind uint8, body []byte) {
		contentType := fuzzContentTypes[int(kind)%len(fuzzContentTypes)]
		req := httptest.NewRequest(http.MethodPost, server.InitializeProcedure, bytes.NewReader(body))
		req.Header.Set("Content-Type", contentType)
		if strings.HasPrefix(contentType, "application/grpc") && !strings.HasPrefix(contentType, "application/grpc-web") {
			req.ProtoMajor, req.ProtoMinor, req.Proto = 2, 0, "HTTP/2.0" // gRPC needs HTTP/2
			req.Header.Set("Te", "trailers")
		}
		if !strings.HasPrefix(req.URL.Path, path) {
			t.Fatalf("mounted at %q, want a prefix of %q", path, req.URL.Path)
		}
		rec := httptest.NewRecorder()
		handler.ServeHTTP(rec, req)
		resp := rec.Result()

		calls := engine.take()
		if len(calls) > 1 {
			t.Fatalf("one request reached the Initializer %d times", len(calls))
		}
		for _, c := range calls {
			if err := server.ValidateRequest(c.version, c.addr); err != nil {
				t.Fatalf("invalid request (%d, %q) reached the Initializer: %v", c.version, c.addr, err)
			}
		}
		succeeded := resp.StatusCode == http.StatusOK
		if strings.HasPrefix(contentType, "application/grpc") {
			status := resp.Header.Get("Grpc-Status")
			if status == "" {
				status = resp.Trailer.Get("Grpc-Status")
			}
			if status == "" && strings.HasPrefix(contentType, "application/grpc-web") {
				status = grpcWebTrailerStatus(rec.Body.Bytes())
			}
			succeeded = succeeded && status == "0"
			if resp.StatusCode == http.StatusOK && status == "" {
				t.Fatalf("%s: HTTP 200 without a grpc-status", contentType)
			}
		} else if !succeeded && resp.StatusCode < 400 {
			t.Fatalf("%s: HTTP %d, want 200 or an error status", contentType, resp.StatusCode)
		}
		if succeeded != (len(calls) == 1) {
			t.Fatalf("%s body %q: success %v, but Initializer calls %d (HTTP %d, headers %v)",
				contentType, body, succeeded, len(calls), resp.StatusCode, resp.Header)
		}
		// Connect-protocol errors (and the content-type guard's) are JSON
		// documents with a code, whatever the request's codec.
		if !succeeded && !strings.HasPrefix(contentType, "application/grpc") {
			var e struct{ Code string }
			if err := json.Unmarshal(rec.Body.Bytes(), &e); err != nil || e.Code == "" {
				t.Fatalf("%s: HTTP %d error body is not a Connect error: %q", contentType, resp.StatusCode, rec.Body.Bytes())
			}
		}
	})
}

// grpcFrame wraps msg in a gRPC length-prefixed message.
func grpcFrame(msg []byte) []byte {
	b := make([]byte, 5+len(msg))
	binary.BigEndian.PutUint32(b[1:], uint32(len(msg)))
	copy(b[5:], msg)
	return b
}

// grpcWebTrailerStatus finds grpc-status in a gRPC-Web response body's
// trailer frame (flag 0x80).
func grpcWebTrailerStatus(body []byte) string {
	for len(body) >= 5 {
		flag, n := body[0], binary.BigEndian.Uint32(body[1:5])
		if uint64(n) > uint64(len(body)-5) {
			return ""
		}
		frame := body[5 : 5+n]
		body = body[5+n:]
		if flag&0x80 == 0 {
			continue
		}
		for line := range strings.SplitSeq(string(frame), "\r\n") {
			if k, v, ok := strings.Cut(line, ":"); ok && strings.EqualFold(strings.TrimSpace(k), "grpc-status") {
				return strings.TrimSpace(v)
			}
		}
	}
	return ""
}
