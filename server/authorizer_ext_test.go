package server_test

import (
	"context"
	"crypto/subtle"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"testing"

	"connectrpc.com/connect"
	"github.com/vmre/vmre"
	"github.com/vmre/vmre/client"
	"github.com/vmre/vmre/server"
)

// TestAuthorizerRefuses proves that a refusing Authorizer's error reaches
// the caller with the code of its sentinel, on every protocol, and that
// the Initializer is never called.
func TestAuthorizerRefuses(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name     string
		refusal  error
		wantCode connect.Code
		wantErr  error
	}{
		{
			name:     "unauthenticated",
			refusal:  fmt.Errorf("%w: no handshake token", vmre.ErrUnauthenticated),
			wantCode: connect.CodeUnauthenticated,
			wantErr:  vmre.ErrUnauthenticated,
		},
		{
			name:     "permission denied",
			refusal:  fmt.Errorf("%w: caller is not the launched plugin", vmre.ErrPermissionDenied),
			wantCode: connect.CodePermissionDenied,
			wantErr:  vmre.ErrPermissionDenied,
		},
		{
			name:     "unclassified",
			refusal:  errors.New("authorizer broke"),
			wantCode: connect.CodeInternal,
			wantErr:  vmre.ErrHandshakeFailed,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			engine := &testEngine{}
			engineAddr := startServer(t, engine, nil, server.WithAuthorizer(
				func(context.Context, server.Call) error { return tt.refusal }))
			for _, c := range callers {
				err := c.call(t.Context(), t, engineAddr, engineVersion, nextVMAddr())
				if got := c.code(err); got != tt.wantCode {
					t.Errorf("%s: code = %v, want %v (error: %v)", c.name, got, tt.wantCode, err)
				}
				if err != nil && !strings.Contains(err.Error(), tt.refusal.Error()) {
					t.Errorf("%s: error %q does not carry the authorizer's message %q", c.name, err, tt.refusal)
				}
				if c.isVMRE && !errors.Is(err, tt.wantErr) {
					t.Errorf("%s: errors.Is(%v, %v) = false", c.name, err, tt.wantErr)
				}
			}
			if n := engine.calls.Load(); n != 0 {
				t.Errorf("Initializer called %d times, want 0", n)
			}
		})
	}
}

// tokenAuthorizer admits callers presenting token in
// vmre.HandshakeTokenHeader, as vmre's engine does for the plugin it
// launched, and records the peers it saw.
func tokenAuthorizer(token string, peers *[]string, mu *sync.Mutex) server.Authorizer {
	return func(_ context.Context, call server.Call) error {
		mu.Lock()
		*peers = append(*peers, call.PeerAddr)
		mu.Unlock()
		got := call.Header.Get(vmre.HandshakeTokenHeader)
		if got == "" {
			return fmt.Errorf("%w: no %s header", vmre.ErrUnauthenticated, vmre.HandshakeTokenHeader)
		}
		if subtle.ConstantTimeCompare([]byte(got), []byte(token)) != 1 {
			return fmt.Errorf("%w: wrong handshake token", vmre.ErrPermissionDenied)
		}
		return nil
	}
}

// TestTokenAuthorizer proves that client.WithToken sends the token where an
// Authorizer finds it, on every protocol of vmre's client, and that the
// Authorizer sees the caller's loopback address.
func TestTokenAuthorizer(t *testing.T) {
	t.Parallel()
	const token = "s3cret-token"
	var (
		mu    sync.Mutex
		peers []string
	)
	engine := &testEngine{}
	engineAddr := startServer(t, engine, nil, server.WithAuthorizer(tokenAuthorizer(token, &peers, &mu)))

	tests := []struct {
		name    string
		opts    []client.Option
		wantErr error
	}{
		{name: "right token", opts: []client.Option{client.WithToken(token)}},
		{name: "no token", wantErr: vmre.ErrUnauthenticated},
		{name: "wrong token", opts: []client.Option{client.WithToken("guess")}, wantErr: vmre.ErrPermissionDenied},
	}
	protocols := []client.Protocol{client.ProtocolGRPC, client.ProtocolGRPCWeb, client.ProtocolConnect}
	for _, p := range protocols {
		for _, tt := range tests {
			t.Run(p.String()+"/"+tt.name, func(t *testing.T) {
				t.Parallel()
				c := client.New(engineAddr, append([]client.Option{client.WithProtocol(p)}, tt.opts...)...)
				t.Cleanup(c.Close)
				vmAddr := nextVMAddr()
				err := c.Initialize(t.Context(), engineVersion, vmAddr)
				if tt.wantErr == nil {
					if err != nil {
						t.Fatalf("Initialize: %v", err)
					}
					if !engine.wasAccepted(vmAddr) {
						t.Error("Initializer did not accept the handshake")
					}
					return
				}
				if !errors.Is(err, tt.wantErr) {
					t.Errorf("Initialize error = %v, want %v", err, tt.wantErr)
				}
				if engine.wasAccepted(vmAddr) {
					t.Error("a refused caller reached the Initializer")
				}
			})
		}
	}
	t.Cleanup(func() {
		mu.Lock()
		defer mu.Unlock()
		if len(peers) != len(protocols)*len(tests) {
			t.Errorf("authorizer saw %d calls, want %d", len(peers), len(protocols)*len(tests))
		}
		for _, p := range peers {
			if host, _, err := net.SplitHostPort(p); err != nil || host != "127.0.0.1" {
				t.Errorf("Call.PeerAddr = %q, want 127.0.0.1:port", p)
			}
		}
	})
}

// TestHandlerOptionsReachConnect: an interceptor passed with
// WithHandlerOptions sees every call, on every protocol.
func TestHandlerOptionsReachConnect(t *testing.T) {
	t.Parallel()
	var (
		mu   sync.Mutex
		seen []string
	)
	intercept := connect.UnaryInterceptorFunc(func(next connect.UnaryFunc) connect.UnaryFunc {
		return func(ctx context.Context, req connect.AnyRequest) (connect.AnyResponse, error) {
			mu.Lock()
			seen = append(seen, req.Spec().Procedure)
			mu.Unlock()
			return next(ctx, req)
		}
	})
	engineAddr := startServer(t, &testEngine{}, nil, server.WithHandlerOptions(connect.WithInterceptors(intercept)))
	for _, c := range callers {
		if err := c.call(t.Context(), t, engineAddr, engineVersion, nextVMAddr()); err != nil {
			t.Fatalf("%s: %v", c.name, err)
		}
	}
	mu.Lock()
	defer mu.Unlock()
	if len(seen) != len(callers) {
		t.Fatalf("interceptor saw %d calls, want %d: %v", len(seen), len(callers), seen)
	}
	for _, p := range seen {
		if p != server.InitializeProcedure {
			t.Errorf("interceptor saw %q, want %q", p, server.InitializeProcedure)
		}
	}
}

// TestAuthorizerSeesCallsRefusedBeforeIt: a request the handler refuses
// before the Authorizer runs (too large, undecodable, of a content type or
// compression it does not take, another method) is shown to the
// Authorizer too, after its refusal: an Authorizer that paces foreign
// callers (the engine's does) would otherwise let a flood of such calls
// go unpaced. A call that reaches the Authorizer is shown to it once.
func TestAuthorizerSeesCallsRefusedBeforeIt(t *testing.T) {
	t.Parallel()
	grpcFrame := func(msg []byte) string {
		return string(append([]byte{0, 0, 0, byte(len(msg) >> 8), byte(len(msg))}, msg...))
	}
	tests := []struct {
		name, method, contentType, encoding, body string
		wantStatus                                int
	}{
		{name: "valid", method: http.MethodPost, contentType: "application/json", body: `{"protocolVersion":42,"addr":"127.0.0.1:1"}`, wantStatus: http.StatusOK},
		{name: "invalid addr", method: http.MethodPost, contentType: "application/json", body: `{"protocolVersion":42,"addr":"x"}`, wantStatus: http.StatusBadRequest},
		{name: "undecodable JSON", method: http.MethodPost, contentType: "application/json", body: `{"protocolVersion":`, wantStatus: http.StatusBadRequest},
		{name: "undecodable gRPC-Web", method: http.MethodPost, contentType: "application/grpc-web+proto", body: grpcFrame([]byte{0x0a, 0xff}), wantStatus: http.StatusOK},
		{name: "too large", method: http.MethodPost, contentType: "application/json", body: strings.Repeat(" ", server.MaxRequestBytes+1), wantStatus: http.StatusTooManyRequests},
		{name: "gzip", method: http.MethodPost, contentType: "application/json", encoding: "gzip", body: "x", wantStatus: http.StatusNotImplemented},
		{name: "text/plain", method: http.MethodPost, contentType: "text/plain", body: "{}", wantStatus: http.StatusUnsupportedMediaType},
		{name: "GET", method: http.MethodGet, wantStatus: http.StatusMethodNotAllowed},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			var seen atomic.Int32
			addr := startServer(t, nopInitializer{}, nil, server.WithAuthorizer(func(context.Context, server.Call) error {
				seen.Add(1)
				return nil
			}))
			req, err := http.NewRequestWithContext(t.Context(), tt.method, "http://"+addr+server.InitializeProcedure, strings.NewReader(tt.body))
			if err != nil {
				t.Fatal(err)
			}
			if tt.contentType != "" {
				req.Header.Set("Content-Type", tt.contentType)
			}
			if tt.encoding != "" {
				req.Header.Set("Content-Encoding", tt.encoding)
			}
			res, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			_, _ = io.Copy(io.Discard, res.Body)
			_ = res.Body.Close()
			if res.StatusCode != tt.wantStatus {
				t.Errorf("HTTP %d, want %d", res.StatusCode, tt.wantStatus)
			}
			// The handler has returned before the client reads the end
			// of the answer, so the Authorizer has run by now.
			if n := seen.Load(); n != 1 {
				t.Errorf("the Authorizer saw the call %d times, want 1", n)
			}
		})
	}
}
