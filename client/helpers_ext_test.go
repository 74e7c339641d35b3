package client_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"net"
	"net/http"
	"sync"
	"testing"

	"github.com/vmre/vmre"
	handshakev1 "github.com/vmre/vmre/gen/vmre/handshake/v1"
	"github.com/vmre/vmre/internal/handshaketest"
	"github.com/vmre/vmre/server"
	"google.golang.org/grpc"
	"google.golang.org/protobuf/types/known/emptypb"
)

// engineVersion is the only protocol version the test engines accept.
const engineVersion = 42

// startVMREServer serves vmre's Runtime handler for init on a real
// listener on 127.0.0.1:0 and returns its "host:port". Each request's HTTP
// version, content type and token header are recorded in seen, if not nil.
func startVMREServer(tb testing.TB, init vmre.Initializer, seen *requestLog, opts ...server.Option) string {
	tb.Helper()
	var wrap func(http.Handler) http.Handler
	if seen != nil {
		wrap = seen.wrap
	}
	return handshaketest.Serve(tb, init, wrap, opts...)
}

// request is what reached a server's port for one call.
type request struct {
	Proto       string // "HTTP/1.1" or "HTTP/2.0"
	ContentType string
	Token       string
	// JSON is the body of a Connect JSON request, re-encoded with sorted
	// keys and no spaces (protojson varies its spacing on purpose).
	JSON string
}

type requestLog struct {
	mu       sync.Mutex
	requests []request
}

func (l *requestLog) wrap(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		req := request{
			Proto:       r.Proto,
			ContentType: r.Header.Get("Content-Type"),
			Token:       r.Header.Get(vmre.HandshakeTokenHeader),
		}
		if req.ContentType == "application/json" {
			body, err := io.ReadAll(r.Body)
			if err != nil {
				http.Error(w, err.Error(), http.StatusBadRequest)
				return
			}
			req.JSON = canonicalJSON(body)
			r.Body = io.NopCloser(bytes.NewReader(body))
		}
		l.mu.Lock()
		l.requests = append(l.requests, req)
		l.mu.Unlock()
		next.ServeHTTP(w, r)
	})
}

// canonicalJSON re-encodes a JSON object with sorted keys, or returns it
// unchanged if it does not parse.
func canonicalJSON(body []byte) string {
	var v map[string]any
	if err := json.Unmarshal(body, &v); err != nil {
		return string(body)
	}
	b, err := json.Marshal(v)
	if err != nil {
		return string(body)
	}
	return string(b)
}

func (l *requestLog) all() []request {
	l.mu.Lock()
	defer l.mu.Unlock()
	return append([]request(nil), l.requests...)
}

// versionEngine accepts engineVersion and records what it accepted.
type versionEngine struct {
	mu       sync.Mutex
	accepted []string // vm addresses
}

func (e *versionEngine) Initialize(_ context.Context, protocolVersion uint32, vmAddr string) error {
	if protocolVersion != engineVersion {
		return &vmre.VersionMismatchError{Accepted: []uint32{engineVersion}, Got: protocolVersion}
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	e.accepted = append(e.accepted, vmAddr)
	return nil
}

func (e *versionEngine) acceptedAddrs() []string {
	e.mu.Lock()
	defer e.mu.Unlock()
	return append([]string(nil), e.accepted...)
}

// runtimeServer is the server side of vm.runtime.Runtime as grpc-go sees
// it. No generated grpc code exists in vmre (it uses connect-go), so the
// tests register the service with a hand-written ServiceDesc, which is all
// protoc-gen-go-grpc would generate for avalanchego's engine.
type runtimeServer interface {
	Initialize(context.Context, *handshakev1.InitializeRequest) (*emptypb.Empty, error)
}

// grpcInitialize adapts a function to runtimeServer.
type grpcInitialize func(context.Context, *handshakev1.InitializeRequest) (*emptypb.Empty, error)

func (f grpcInitialize) Initialize(ctx context.Context, req *handshakev1.InitializeRequest) (*emptypb.Empty, error) {
	return f(ctx, req)
}

var runtimeServiceDesc = grpc.ServiceDesc{
	ServiceName: "vm.runtime.Runtime",
	HandlerType: (*runtimeServer)(nil),
	Methods: []grpc.MethodDesc{{
		MethodName: "Initialize",
		Handler: func(srv any, ctx context.Context, dec func(any) error, interceptor grpc.UnaryServerInterceptor) (any, error) {
			in := new(handshakev1.InitializeRequest)
			if err := dec(in); err != nil {
				return nil, err
			}
			if interceptor == nil {
				return srv.(runtimeServer).Initialize(ctx, in)
			}
			info := &grpc.UnaryServerInfo{Server: srv, FullMethod: "/vm.runtime.Runtime/Initialize"}
			return interceptor(ctx, in, info, func(ctx context.Context, req any) (any, error) {
				return srv.(runtimeServer).Initialize(ctx, req.(*handshakev1.InitializeRequest))
			})
		},
	}},
	Metadata: "vm/runtime/runtime.proto",
}

// startGRPCGoServer serves impl with a plain grpc-go server on 127.0.0.1:0,
// the way avalanchego's and luxd's engines do, and returns its address.
func startGRPCGoServer(tb testing.TB, impl runtimeServer) string {
	tb.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		tb.Fatalf("listen: %v", err)
	}
	s := grpc.NewServer()
	s.RegisterService(&runtimeServiceDesc, impl)
	served := make(chan error, 1)
	go func() { served <- s.Serve(ln) }()
	tb.Cleanup(func() {
		s.Stop()
		if err := <-served; err != nil {
			tb.Errorf("grpc serve: %v", err)
		}
	})
	return ln.Addr().String()
}

// allSentinels are the root sentinels a handshake error may wrap.
var allSentinels = []error{
	vmre.ErrHandshakeFailed, vmre.ErrProtocolVersionMismatch, vmre.ErrHandshakeTimeout,
	vmre.ErrProcessNotFound, vmre.ErrProcessExited, vmre.ErrInvalidConfig,
	vmre.ErrInvalidRequest, vmre.ErrAlreadyInitialized, vmre.ErrUnauthenticated,
	vmre.ErrPermissionDenied, vmre.ErrEngineAddressNotSet,
}

// checkSentinels fails unless err wraps exactly the sentinels in want.
func checkSentinels(tb testing.TB, err error, want ...error) {
	tb.Helper()
	for _, s := range allSentinels {
		wanted := false
		for _, w := range want {
			if errors.Is(s, w) {
				wanted = true
			}
		}
		if got := errors.Is(err, s); got != wanted {
			tb.Errorf("errors.Is(%q, %q) = %v, want %v", err, s, got, wanted)
		}
	}
}
