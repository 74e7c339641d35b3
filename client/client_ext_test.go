package client_test

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"connectrpc.com/connect"
	"github.com/vmre/vmre"
	"github.com/vmre/vmre/client"
	handshakev1 "github.com/vmre/vmre/gen/vmre/handshake/v1"
	"github.com/vmre/vmre/internal/handshaketest"
	"github.com/vmre/vmre/server"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/emptypb"
)

// TestInitializeProtocols proves that each protocol handshakes with vmre's
// server over the HTTP version and content type it promises, sends the
// token header, and reports a mismatch with the engine's own words.
func TestInitializeProtocols(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name     string
		opts     []client.Option
		wantWire request
	}{
		{
			name:     "default is gRPC over h2c",
			wantWire: request{Proto: "HTTP/2.0", ContentType: "application/grpc"},
		},
		{
			name:     "gRPC",
			opts:     []client.Option{client.WithProtocol(client.ProtocolGRPC)},
			wantWire: request{Proto: "HTTP/2.0", ContentType: "application/grpc"},
		},
		{
			name:     "gRPC-Web",
			opts:     []client.Option{client.WithProtocol(client.ProtocolGRPCWeb)},
			wantWire: request{Proto: "HTTP/1.1", ContentType: "application/grpc-web+proto"},
		},
		{
			name:     "Connect JSON",
			opts:     []client.Option{client.WithProtocol(client.ProtocolConnect)},
			wantWire: request{Proto: "HTTP/1.1", ContentType: "application/json"},
		},
		{
			name:     "with token",
			opts:     []client.Option{client.WithToken("tok")},
			wantWire: request{Proto: "HTTP/2.0", ContentType: "application/grpc", Token: "tok"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			engine := &versionEngine{}
			seen := &requestLog{}
			c := client.New(startVMREServer(t, engine, seen), tt.opts...)
			t.Cleanup(c.Close)

			if err := c.Initialize(t.Context(), engineVersion, "127.0.0.1:50001"); err != nil {
				t.Fatalf("Initialize: %v", err)
			}
			if got := engine.acceptedAddrs(); len(got) != 1 || got[0] != "127.0.0.1:50001" {
				t.Errorf("engine accepted %q, want [127.0.0.1:50001]", got)
			}

			err := c.Initialize(t.Context(), 41, "127.0.0.1:50001")
			const wantText = "handshake failed: protocol version mismatch engine: 42 vm: 41"
			if err == nil || err.Error() != wantText {
				t.Errorf("mismatch error = %v, want %q", err, wantText)
			}
			checkSentinels(t, err, vmre.ErrHandshakeFailed, vmre.ErrProtocolVersionMismatch)
			if code := connect.CodeOf(err); code != connect.CodeFailedPrecondition {
				t.Errorf("connect.CodeOf = %v, want failed_precondition", code)
			}

			requests := seen.all()
			if len(requests) != 2 {
				t.Fatalf("%d requests reached the server, want 2", len(requests))
			}
			for i, got := range requests {
				body := got.JSON
				got.JSON = ""
				if got != tt.wantWire {
					t.Errorf("request %d on the wire = %+v, want %+v", i, got, tt.wantWire)
				}
				if tt.wantWire.ContentType != "application/json" {
					continue
				}
				// The Connect protocol must send what curl sends.
				want := []string{
					`{"addr":"127.0.0.1:50001","protocolVersion":42}`,
					`{"addr":"127.0.0.1:50001","protocolVersion":41}`,
				}[i]
				if body != want {
					t.Errorf("request %d JSON body = %s, want %s", i, body, want)
				}
			}
		})
	}
}

// avalancheMismatch builds the error avalanchego's subprocess initializer
// returns for a plugin of another protocol version. Its engine is a grpc-go
// server that returns it as is, so it travels as code unknown.
func avalancheMismatch(engine, vm uint32) error {
	errMismatch := errors.New("RPCChainVM protocol version mismatch between AvalancheGo and Virtual Machine plugin")
	return fmt.Errorf("%w. AvalancheGo version v1.13.0 implements RPCChainVM protocol version %d. "+
		"The VM implements RPCChainVM protocol version %d. Please make sure that there is an exact match "+
		"of the protocol versions.", errMismatch, engine, vm)
}

// TestInitializeGRPCGoServer proves that the default client handshakes
// with a plain grpc-go server, the kind avalanchego's engine is (it speaks
// only HTTP/2, so a client falling back to HTTP/1.1 fails here), and that
// avalanchego's mismatch, sent as code unknown, still matches
// vmre.ErrProtocolVersionMismatch.
func TestInitializeGRPCGoServer(t *testing.T) {
	t.Parallel()
	type received struct {
		version uint32
		addr    string
		token   []string
	}
	got := make(chan received, 2)
	engineAddr := startGRPCGoServer(t, grpcInitialize(
		func(ctx context.Context, req *handshakev1.InitializeRequest) (*emptypb.Empty, error) {
			md, _ := metadata.FromIncomingContext(ctx)
			got <- received{req.GetProtocolVersion(), req.GetAddr(), md.Get(vmre.HandshakeTokenHeader)}
			if req.GetProtocolVersion() != 35 {
				return nil, avalancheMismatch(35, req.GetProtocolVersion())
			}
			return &emptypb.Empty{}, nil
		}))

	c := client.New(engineAddr, client.WithToken("tok"))
	t.Cleanup(c.Close)
	if err := c.Initialize(t.Context(), 35, "127.0.0.1:50001"); err != nil {
		t.Fatalf("Initialize: %v", err)
	}
	want := received{35, "127.0.0.1:50001", []string{"tok"}}
	if r := <-got; r.version != want.version || r.addr != want.addr || len(r.token) != 1 || r.token[0] != "tok" {
		t.Errorf("grpc-go server received %+v, want %+v", r, want)
	}

	err := c.Initialize(t.Context(), 34, "127.0.0.1:50001")
	<-got
	checkSentinels(t, err, vmre.ErrHandshakeFailed, vmre.ErrProtocolVersionMismatch)
	if code := connect.CodeOf(err); code != connect.CodeUnknown {
		t.Errorf("connect.CodeOf = %v, want unknown (what grpc-go sends for a plain error)", code)
	}
	const wantPrefix = "handshake failed: RPCChainVM protocol version mismatch between AvalancheGo and Virtual Machine plugin. " +
		"AvalancheGo version v1.13.0 implements RPCChainVM protocol version 35. The VM implements RPCChainVM protocol version 34."
	if err == nil || len(err.Error()) < len(wantPrefix) || err.Error()[:len(wantPrefix)] != wantPrefix {
		t.Errorf("error = %v, want it to start with %q", err, wantPrefix)
	}
}

// TestErrorMapping proves the one mapping from status codes back to the
// root sentinels, end to end: a grpc-go server returns each status, and the
// client's error must wrap exactly the expected sentinels, keep the
// *connect.Error reachable, and read well.
func TestErrorMapping(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name     string
		status   error
		wantErr  []error
		wantCode connect.Code
		wantText string
	}{
		{
			name:     "invalid argument",
			status:   status.Error(codes.InvalidArgument, `invalid request: addr "nohost" is not host:port`),
			wantErr:  []error{vmre.ErrInvalidRequest},
			wantCode: connect.CodeInvalidArgument,
			wantText: `handshake failed: invalid request: addr "nohost" is not host:port`,
		},
		{
			name:     "failed precondition",
			status:   status.Error(codes.FailedPrecondition, "protocol version mismatch engine: 42 vm: 41"),
			wantErr:  []error{vmre.ErrProtocolVersionMismatch},
			wantCode: connect.CodeFailedPrecondition,
			wantText: "handshake failed: protocol version mismatch engine: 42 vm: 41",
		},
		{
			name:     "failed precondition without the words",
			status:   status.Error(codes.FailedPrecondition, "engine 42, vm 41"),
			wantErr:  []error{vmre.ErrProtocolVersionMismatch},
			wantCode: connect.CodeFailedPrecondition,
			wantText: "handshake failed: protocol version mismatch: engine 42, vm 41",
		},
		{
			name:     "engine message already classified",
			status:   status.Error(codes.FailedPrecondition, "handshake failed: protocol version mismatch engine: 42 vm: 41"),
			wantErr:  []error{vmre.ErrProtocolVersionMismatch},
			wantCode: connect.CodeFailedPrecondition,
			wantText: "handshake failed: protocol version mismatch engine: 42 vm: 41",
		},
		{
			name:     "already exists",
			status:   status.Error(codes.AlreadyExists, "already initialized"),
			wantErr:  []error{vmre.ErrAlreadyInitialized},
			wantCode: connect.CodeAlreadyExists,
			wantText: "handshake failed: already initialized",
		},
		{
			name:     "unauthenticated",
			status:   status.Error(codes.Unauthenticated, "no token"),
			wantErr:  []error{vmre.ErrUnauthenticated},
			wantCode: connect.CodeUnauthenticated,
			wantText: "handshake failed: unauthenticated: no token",
		},
		{
			name:     "permission denied",
			status:   status.Error(codes.PermissionDenied, "permission denied: wrong token"),
			wantErr:  []error{vmre.ErrPermissionDenied},
			wantCode: connect.CodePermissionDenied,
			wantText: "handshake failed: permission denied: wrong token",
		},
		{
			name:     "deadline exceeded from the engine",
			status:   status.Error(codes.DeadlineExceeded, "engine gave up"),
			wantErr:  []error{vmre.ErrHandshakeTimeout},
			wantCode: connect.CodeDeadlineExceeded,
			wantText: "handshake failed: timeout: engine gave up",
		},
		{
			name:     "unavailable from the engine",
			status:   status.Error(codes.Unavailable, "shutting down"),
			wantErr:  []error{vmre.ErrProcessNotFound},
			wantCode: connect.CodeUnavailable,
			wantText: "handshake failed: vm process not found: shutting down",
		},
		{
			name:     "not found",
			status:   status.Error(codes.NotFound, "vm process not found"),
			wantErr:  []error{vmre.ErrProcessNotFound},
			wantCode: connect.CodeNotFound,
			wantText: "handshake failed: vm process not found",
		},
		{
			name:     "unknown avalanchego mismatch",
			status:   avalancheMismatch(35, 34),
			wantErr:  []error{vmre.ErrProtocolVersionMismatch},
			wantCode: connect.CodeUnknown,
		},
		{
			name:     "unknown other",
			status:   errors.New("database closed"),
			wantCode: connect.CodeUnknown,
			wantText: "handshake failed: unknown: database closed",
		},
		{
			name:     "internal",
			status:   status.Error(codes.Internal, "boom"),
			wantCode: connect.CodeInternal,
			wantText: "handshake failed: internal: boom",
		},
		{
			name:     "resource exhausted",
			status:   status.Error(codes.ResourceExhausted, "too big"),
			wantCode: connect.CodeResourceExhausted,
			wantText: "handshake failed: resource_exhausted: too big",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			engineAddr := startGRPCGoServer(t, grpcInitialize(
				func(context.Context, *handshakev1.InitializeRequest) (*emptypb.Empty, error) {
					return nil, tt.status
				}))
			c := client.New(engineAddr)
			t.Cleanup(c.Close)
			err := c.Initialize(t.Context(), engineVersion, "127.0.0.1:50001")
			checkSentinels(t, err, append([]error{vmre.ErrHandshakeFailed}, tt.wantErr...)...)
			var connectErr *connect.Error
			if !errors.As(err, &connectErr) {
				t.Fatalf("errors.As(%v, *connect.Error) = false", err)
			}
			if got := connect.CodeOf(err); got != tt.wantCode {
				t.Errorf("connect.CodeOf = %v, want %v", got, tt.wantCode)
			}
			if tt.wantText != "" && err.Error() != tt.wantText {
				t.Errorf("Error() = %q, want %q", err, tt.wantText)
			}
		})
	}
}

// TestInitializeLocalFailures covers failures decided on the client's side:
// no engine listening, the caller's deadline or cancellation, and bad
// configuration.
func TestInitializeLocalFailures(t *testing.T) {
	t.Parallel()
	// hang blocks every call until the caller gives up.
	hang := startGRPCGoServer(t, grpcInitialize(
		func(ctx context.Context, _ *handshakev1.InitializeRequest) (*emptypb.Empty, error) {
			<-ctx.Done()
			return nil, status.FromContextError(ctx.Err()).Err()
		}))

	tests := []struct {
		name       string
		engineAddr string
		opts       []client.Option
		ctx        func(t *testing.T) context.Context
		wantErr    []error
		wantCode   connect.Code
		// wantOther is a non-sentinel error the result must also match.
		wantOther error
	}{
		{
			name:       "nothing listening",
			engineAddr: handshaketest.RefusingAddr(t),
			wantErr:    []error{vmre.ErrProcessNotFound},
			wantCode:   connect.CodeUnavailable,
		},
		{
			name:       "nothing listening, gRPC-Web",
			engineAddr: handshaketest.RefusingAddr(t),
			opts:       []client.Option{client.WithProtocol(client.ProtocolGRPCWeb)},
			wantErr:    []error{vmre.ErrProcessNotFound},
			wantCode:   connect.CodeUnavailable,
		},
		{
			name:       "caller's deadline",
			engineAddr: hang,
			ctx: func(t *testing.T) context.Context {
				ctx, cancel := context.WithTimeout(t.Context(), 50*time.Millisecond)
				t.Cleanup(cancel)
				return ctx
			},
			wantErr:   []error{vmre.ErrHandshakeTimeout},
			wantCode:  connect.CodeDeadlineExceeded,
			wantOther: context.DeadlineExceeded,
		},
		{
			name:       "caller cancels",
			engineAddr: hang,
			ctx: func(t *testing.T) context.Context {
				ctx, cancel := context.WithCancel(t.Context())
				time.AfterFunc(50*time.Millisecond, cancel)
				return ctx
			},
			wantCode:  connect.CodeCanceled,
			wantOther: context.Canceled,
		},
		{
			name:       "empty engine address",
			engineAddr: "",
			wantErr:    []error{vmre.ErrInvalidConfig},
			wantCode:   connect.CodeUnknown,
		},
		{
			name:       "engine address without port",
			engineAddr: "localhost",
			wantErr:    []error{vmre.ErrInvalidConfig},
			wantCode:   connect.CodeUnknown,
		},
		{
			name:       "http URL with TLS",
			engineAddr: "http://127.0.0.1:1",
			opts:       []client.Option{client.WithTLS(nil)},
			wantErr:    []error{vmre.ErrInvalidConfig},
			wantCode:   connect.CodeUnknown,
		},
		{
			name:       "unix socket without a path",
			engineAddr: "unix:",
			wantErr:    []error{vmre.ErrInvalidConfig},
			wantCode:   connect.CodeUnknown,
		},
		{
			name:       "unknown protocol",
			engineAddr: "127.0.0.1:1",
			opts:       []client.Option{client.WithProtocol(client.Protocol(99))},
			wantErr:    []error{vmre.ErrInvalidConfig},
			wantCode:   connect.CodeUnknown,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			ctx := t.Context()
			if tt.ctx != nil {
				ctx = tt.ctx(t)
			}
			c := client.New(tt.engineAddr, tt.opts...)
			t.Cleanup(c.Close)
			err := c.Initialize(ctx, engineVersion, "127.0.0.1:50001")
			checkSentinels(t, err, append([]error{vmre.ErrHandshakeFailed}, tt.wantErr...)...)
			if got := connect.CodeOf(err); got != tt.wantCode {
				t.Errorf("connect.CodeOf(%v) = %v, want %v", err, got, tt.wantCode)
			}
			if tt.wantOther != nil && !errors.Is(err, tt.wantOther) {
				t.Errorf("errors.Is(%v, %v) = false", err, tt.wantOther)
			}
		})
	}
}

// TestZeroClient proves that a Client not made by New fails cleanly.
func TestZeroClient(t *testing.T) {
	t.Parallel()
	var c client.Client
	err := c.Initialize(t.Context(), engineVersion, "127.0.0.1:50001")
	checkSentinels(t, err, vmre.ErrHandshakeFailed, vmre.ErrInvalidConfig)
	c.Close()
}

// TestErrorTextForUnreachableEngine pins the text a plugin author sees
// when the engine is gone, which the README quotes.
func TestErrorTextForUnreachableEngine(t *testing.T) {
	t.Parallel()
	addr := handshaketest.RefusingAddr(t)
	err := client.New(addr).Initialize(t.Context(), engineVersion, "127.0.0.1:50001")
	want := "handshake failed: vm process not found: "
	if err == nil || len(err.Error()) <= len(want) || err.Error()[:len(want)] != want {
		t.Errorf("error = %v, want it to start with %q", err, want)
	}
}

// countingTransport counts round trips through an http.Client given with
// WithHTTPClient.
type countingTransport struct {
	n    atomic.Int64
	next http.RoundTripper
}

func (t *countingTransport) RoundTrip(r *http.Request) (*http.Response, error) {
	t.n.Add(1)
	return t.next.RoundTrip(r)
}

// TestWithHTTPClient proves that a caller's http.Client is used for the
// calls and survives Close, and that a nil one is ignored.
func TestWithHTTPClient(t *testing.T) {
	t.Parallel()
	engineAddr := startVMREServer(t, &versionEngine{}, nil)
	var protocols http.Protocols
	protocols.SetUnencryptedHTTP2(true)
	base := &http.Transport{Protocols: &protocols}
	t.Cleanup(base.CloseIdleConnections)
	rt := &countingTransport{next: base}

	c := client.New(engineAddr, client.WithHTTPClient(&http.Client{Transport: rt}))
	for range 3 {
		if err := c.Initialize(t.Context(), engineVersion, "127.0.0.1:50001"); err != nil {
			t.Fatalf("Initialize: %v", err)
		}
		c.Close()
	}
	if n := rt.n.Load(); n != 3 {
		t.Errorf("caller's transport saw %d round trips, want 3", n)
	}

	c = client.New(engineAddr, client.WithHTTPClient(nil))
	t.Cleanup(c.Close)
	if err := c.Initialize(t.Context(), engineVersion, "127.0.0.1:50001"); err != nil {
		t.Fatalf("Initialize with WithHTTPClient(nil): %v", err)
	}
}

// TestBaseURL proves that an http:// base URL works as well as host:port.
func TestBaseURL(t *testing.T) {
	t.Parallel()
	engineAddr := startVMREServer(t, &versionEngine{}, nil)
	c := client.New("http://" + engineAddr)
	t.Cleanup(c.Close)
	if err := c.Initialize(t.Context(), engineVersion, "127.0.0.1:50001"); err != nil {
		t.Fatalf("Initialize: %v", err)
	}
}

// TestConcurrentInitialize proves that one Client may be used from many
// goroutines at once (run with -race), also while Close is called.
func TestConcurrentInitialize(t *testing.T) {
	t.Parallel()
	engine := &versionEngine{}
	c := client.New(startVMREServer(t, engine, nil))
	t.Cleanup(c.Close)

	const n = 32
	var wg sync.WaitGroup
	errs := make(chan error, n)
	for i := range n {
		wg.Go(func() {
			errs <- c.Initialize(t.Context(), engineVersion, "127.0.0.1:"+strconv.Itoa(50000+i))
			if i%8 == 0 {
				c.Close()
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Errorf("Initialize: %v", err)
		}
	}
	if got := len(engine.acceptedAddrs()); got != n {
		t.Errorf("engine accepted %d handshakes, want %d", got, n)
	}
}

func TestProtocolString(t *testing.T) {
	t.Parallel()
	tests := []struct {
		p    client.Protocol
		want string
	}{
		{client.ProtocolGRPC, "grpc"},
		{client.ProtocolGRPCWeb, "grpcweb"},
		{client.ProtocolConnect, "connect"},
		{client.Protocol(7), "Protocol(7)"},
	}
	for _, tt := range tests {
		if got := tt.p.String(); got != tt.want {
			t.Errorf("Protocol(%d).String() = %q, want %q", int(tt.p), got, tt.want)
		}
	}
}

// TestCloseReleasesConnection proves that Close really closes the
// connection the default transport opened, for each protocol: the engine
// sees it closed, so a plugin leaves no socket to the handshake port.
func TestCloseReleasesConnection(t *testing.T) {
	t.Parallel()
	for _, p := range []client.Protocol{client.ProtocolGRPC, client.ProtocolGRPCWeb, client.ProtocolConnect} {
		t.Run(p.String(), func(t *testing.T) {
			t.Parallel()
			ln, err := net.Listen("tcp", "127.0.0.1:0")
			if err != nil {
				t.Fatalf("listen: %v", err)
			}
			mux := http.NewServeMux()
			mux.Handle(server.NewHandler(&versionEngine{}))
			srv := server.NewHTTPServer(mux)
			closed := make(chan struct{}, 1)
			srv.ConnState = func(_ net.Conn, state http.ConnState) {
				if state == http.StateClosed {
					closed <- struct{}{}
				}
			}
			go func() { _ = srv.Serve(ln) }()
			t.Cleanup(func() { _ = srv.Close() })

			c := client.New(ln.Addr().String(), client.WithProtocol(p))
			if err := c.Initialize(t.Context(), engineVersion, "127.0.0.1:50001"); err != nil {
				t.Fatalf("Initialize: %v", err)
			}
			c.Close()
			select {
			case <-closed:
			case <-time.After(time.Minute): // a bound for a hang, below the server's IdleTimeout
				t.Fatal("the engine did not see the connection closed within a minute of Close")
			}
		})
	}
}

// TestInitializeEngineReportsDeadlineFirst: an engine that reports
// deadline_exceeded just before the caller's own deadline (it enforces the
// same deadline) still gives an error matching context.DeadlineExceeded;
// one that reports it with the caller's deadline far away (its own
// handshake timeout) does not, and is not waited for.
func TestInitializeEngineReportsDeadlineFirst(t *testing.T) {
	t.Parallel()
	engine := startGRPCGoServer(t, grpcInitialize(
		func(context.Context, *handshakev1.InitializeRequest) (*emptypb.Empty, error) {
			return nil, status.Error(codes.DeadlineExceeded, "handshake timed out")
		}))
	c := client.New(engine)
	t.Cleanup(c.Close)

	near, cancel := context.WithTimeout(t.Context(), 50*time.Millisecond)
	defer cancel()
	err := c.Initialize(near, engineVersion, "127.0.0.1:50001")
	checkSentinels(t, err, vmre.ErrHandshakeFailed, vmre.ErrHandshakeTimeout)
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("deadline 50 ms away: errors.Is(%v, context.DeadlineExceeded) = false", err)
	}

	far, cancel := context.WithTimeout(t.Context(), time.Hour)
	defer cancel()
	err = c.Initialize(far, engineVersion, "127.0.0.1:50001")
	checkSentinels(t, err, vmre.ErrHandshakeFailed, vmre.ErrHandshakeTimeout)
	if errors.Is(err, context.DeadlineExceeded) || far.Err() != nil {
		t.Errorf("deadline an hour away: %v matches context.DeadlineExceeded (context: %v)", err, far.Err())
	}
}

// TestTokenKeepsCallersCallInfo: with a token, the headers the caller put
// in its own client context are still sent, and the caller still reads the
// response headers through it.
func TestTokenKeepsCallersCallInfo(t *testing.T) {
	t.Parallel()
	for _, p := range []client.Protocol{client.ProtocolGRPC, client.ProtocolGRPCWeb, client.ProtocolConnect} {
		t.Run(p.String(), func(t *testing.T) {
			t.Parallel()
			type received struct{ token, trace string }
			got := make(chan received, 1)
			replyHeader := func(next http.Handler) http.Handler {
				return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
					got <- received{r.Header.Get(vmre.HandshakeTokenHeader), r.Header.Get("X-Trace")}
					w.Header().Set("X-Reply", "pong")
					next.ServeHTTP(w, r)
				})
			}
			requireToken := server.WithAuthorizer(func(_ context.Context, call server.Call) error {
				if call.Header.Get(vmre.HandshakeTokenHeader) != "tok" {
					return vmre.ErrUnauthenticated
				}
				return nil
			})
			engineAddr := handshaketest.Serve(t, &versionEngine{}, replyHeader, requireToken)
			c := client.New(engineAddr, client.WithProtocol(p), client.WithToken("tok"))
			t.Cleanup(c.Close)

			ctx, info := connect.NewClientContext(t.Context())
			info.RequestHeader().Set("X-Trace", "abc")
			if err := c.Initialize(ctx, engineVersion, "127.0.0.1:50001"); err != nil {
				t.Fatalf("Initialize: %v", err)
			}
			if r := <-got; r != (received{token: "tok", trace: "abc"}) {
				t.Errorf("server received token %q, X-Trace %q; want tok, abc", r.token, r.trace)
			}
			if reply := info.ResponseHeader().Get("X-Reply"); reply != "pong" {
				t.Errorf("response header X-Reply = %q through the caller's call info, want pong", reply)
			}
		})
	}
}
