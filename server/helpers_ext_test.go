package server_test

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"

	"connectrpc.com/connect"
	"github.com/vmre/vmre"
	handshakev1 "github.com/vmre/vmre/gen/vmre/handshake/v1"
	"github.com/vmre/vmre/internal/handshaketest"
	"github.com/vmre/vmre/server"
	"google.golang.org/protobuf/types/known/emptypb"
)

// engineVersion is the only protocol version the test engines accept.
const engineVersion = 42

// startServer serves the Runtime handler for init on a real listener on
// 127.0.0.1:0 with server.NewHTTPServer and returns its "host:port". Every
// request's protocol and content type are reported to seen, if not nil. The
// server is closed when the test ends, and must not have failed.
func startServer(tb testing.TB, init vmre.Initializer, seen *wireLog, opts ...server.Option) string {
	tb.Helper()
	var wrap func(http.Handler) http.Handler
	if seen != nil {
		wrap = seen.wrap
	}
	return handshaketest.Serve(tb, init, wrap, opts...)
}

// wire is what reached the server's port for one request.
type wire struct {
	Proto       string // "HTTP/1.1" or "HTTP/2.0"
	ContentType string
}

// wireLog records the transport side of requests, so that a test can prove
// a client really spoke the protocol it claims to.
type wireLog struct {
	mu    sync.Mutex
	wires []wire
}

func (l *wireLog) wrap(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		l.mu.Lock()
		l.wires = append(l.wires, wire{Proto: r.Proto, ContentType: r.Header.Get("Content-Type")})
		l.mu.Unlock()
		next.ServeHTTP(w, r)
	})
}

func (l *wireLog) last(tb testing.TB) wire {
	tb.Helper()
	l.mu.Lock()
	defer l.mu.Unlock()
	if len(l.wires) == 0 {
		tb.Fatal("no request reached the server")
	}
	return l.wires[len(l.wires)-1]
}

// call is one Initialize the test engine received.
type call struct {
	Version uint32
	Addr    string
}

// testEngine is an Initializer that behaves like vmre's engine: it accepts
// engineVersion only, and each VM address only once (a second Initialize
// for it is refused with vmre.ErrAlreadyInitialized).
type testEngine struct {
	calls atomic.Int64 // every call, accepted or not

	mu       sync.Mutex
	accepted []call
	seen     map[string]bool
}

var _ vmre.Initializer = (*testEngine)(nil)

func (e *testEngine) Initialize(_ context.Context, protocolVersion uint32, vmAddr string) error {
	e.calls.Add(1)
	if protocolVersion != engineVersion {
		return &vmre.VersionMismatchError{Accepted: []uint32{engineVersion}, Got: protocolVersion}
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.seen[vmAddr] {
		return fmt.Errorf("%w: vm at %s has already handshaken", vmre.ErrAlreadyInitialized, vmAddr)
	}
	if e.seen == nil {
		e.seen = make(map[string]bool)
	}
	e.seen[vmAddr] = true
	e.accepted = append(e.accepted, call{Version: protocolVersion, Addr: vmAddr})
	return nil
}

// wasAccepted reports whether vmAddr's handshake was accepted.
func (e *testEngine) wasAccepted(vmAddr string) bool {
	e.mu.Lock()
	defer e.mu.Unlock()
	for _, c := range e.accepted {
		if c.Addr == vmAddr {
			return true
		}
	}
	return false
}

// vmAddrs hands out distinct, valid VM addresses, so that tests sharing a
// testEngine never collide on "already initialized".
var vmAddrs atomic.Int64

func nextVMAddr() string {
	return net.JoinHostPort("127.0.0.1", strconv.FormatInt(20000+vmAddrs.Add(1)%40000, 10))
}

// nopInitializer accepts every handshake.
type nopInitializer struct{}

func (nopInitializer) Initialize(context.Context, uint32, string) error { return nil }

// runtimeClient is a connect-go client of the handshake: what the generated
// client of proto/vm/runtime/runtime.proto would be, on vmre's own copy of
// the request message.
type runtimeClient struct {
	c *connect.Client[handshakev1.InitializeRequest, emptypb.Empty]
}

func newRuntimeClient(hc connect.HTTPClient, baseURL string, opts ...connect.ClientOption) runtimeClient {
	return runtimeClient{connect.NewClient[handshakev1.InitializeRequest, emptypb.Empty](hc, baseURL+server.InitializeProcedure, opts...)}
}

func (r runtimeClient) Initialize(ctx context.Context, req *handshakev1.InitializeRequest) (*emptypb.Empty, error) {
	res, err := r.c.CallUnary(ctx, connect.NewRequest(req))
	if err != nil {
		return nil, err
	}
	return res.Msg, nil
}
