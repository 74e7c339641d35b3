// Package server serves the vm.runtime.Runtime handshake service, the one a
// plugin calls to announce its protocol version and address, backed by any
// [vmre.Initializer].
//
// The handler is built with connect-go, so one port answers gRPC, gRPC-Web
// and Connect (binary and JSON) callers alike; [NewHTTPServer] returns an
// [http.Server] that speaks both HTTP/1.1 and cleartext HTTP/2 (h2c, prior
// knowledge), which plain grpc-go plugins need. Requests are validated before
// the Initializer sees them, and errors are mapped to status codes in one
// place (see [CodeOf]). A bad request never stops the server.
//
// The wire is proto/vm/runtime/runtime.proto's, byte for byte, but the Go
// types are vmre's own: requests decode into vmre.handshake.v1's copy of
// InitializeRequest, served under the frozen [InitializeProcedure]. Nothing
// in vmre registers vm/runtime/runtime.proto or a vm.runtime name in the
// global protobuf registry, so this package links into programs that also
// link avalanchego's or luxd's generated vm/runtime package (which do).
//
// Configuration: the handler wraps a connect handler, so its settings are
// connect-style functional options ([Option]), which also carry connect's own
// ([WithHandlerOptions]).
package server

import (
	"context"
	"math"
	"net"
	"net/http"
	"strconv"
	"time"

	"connectrpc.com/connect"
	"github.com/vmre/vmre"
	handshakev1 "github.com/vmre/vmre/gen/vmre/handshake/v1"
	"github.com/vmre/vmre/internal/requestguard"
	"github.com/vmre/vmre/internal/vmruntime"
	"google.golang.org/protobuf/types/known/emptypb"
)

// The handshake's names, as the frozen contract
// (proto/vm/runtime/runtime.proto) declares them.
const (
	// ServiceName is the full name of the handshake service.
	ServiceName = vmruntime.ServiceName
	// InitializeProcedure is the path of the Initialize RPC: the HTTP path
	// of every protocol and the gRPC method name.
	InitializeProcedure = vmruntime.InitializeProcedure
)

// MaxRequestBytes caps the size of an Initialize request message; larger
// requests fail with resource_exhausted. A valid request is a few dozen
// bytes. The server reads at most a few dozen bytes more than the cap of
// any request body (room for gRPC framing) before it answers; over
// HTTP/1.1 it then closes the connection rather than read the rest.
const MaxRequestBytes = 4 << 10

// Call describes the transport side of one Initialize request, for an
// [Authorizer].
type Call struct {
	// PeerAddr is the caller's address as the server saw it ("ip:port").
	PeerAddr string
	// Header holds the request headers.
	Header http.Header
}

// Authorizer decides whether a caller may handshake at all, before its
// request reaches the Initializer. It returns nil to let the call through
// or an error wrapping [vmre.ErrUnauthenticated] or
// [vmre.ErrPermissionDenied].
type Authorizer func(ctx context.Context, call Call) error

// Option configures [NewHandler].
type Option interface {
	apply(*config)
}

type optionFunc func(*config)

func (f optionFunc) apply(c *config) { f(c) }

type config struct {
	authorize      Authorizer
	handlerOptions []connect.HandlerOption
}

// WithAuthorizer runs authorize on every call before it is validated and
// passed to the Initializer. A request the handler refuses before that (a
// body too large, one that does not decode, an unsupported content type
// or compression, another method) is shown to authorize after its
// refusal, its verdict unused, so that an Authorizer that paces or counts
// refused callers sees every caller the handler refuses. By default every
// caller is let through.
func WithAuthorizer(authorize Authorizer) Option {
	return optionFunc(func(c *config) { c.authorize = authorize })
}

// WithHandlerOptions passes extra options (interceptors, say) to connect-go.
// connect-go's WithReadMaxBytes cannot raise the cap: the handler bounds
// how much of a body it reads by [MaxRequestBytes].
func WithHandlerOptions(opts ...connect.HandlerOption) Option {
	return optionFunc(func(c *config) { c.handlerOptions = append(c.handlerOptions, opts...) })
}

// NewHandler returns the path under which to mount the Runtime service and
// its handler, which passes each valid Initialize request to initializer.
// The handler is safe for concurrent use.
//
// A request is refused before it reaches the Initializer when the
// Authorizer refuses it, when its body exceeds the size cap
// (resource_exhausted; the body is not read much past the cap, and this is
// decided before the Authorizer runs), when it does not decode or
// [ValidateRequest] fails (invalid_argument), and when it is a POST whose
// Content-Type no protocol uses: that gets HTTP 415 with the Accept-Post
// header and, unlike plain connect-go, a Connect error body
// (invalid_argument) saying what to send.
func NewHandler(initializer vmre.Initializer, opts ...Option) (string, http.Handler) {
	var cfg config
	for _, o := range opts {
		o.apply(&cfg)
	}
	svc := &runtimeService{initializer: initializer, authorize: cfg.authorize}
	handlerOpts := append([]connect.HandlerOption{
		connect.WithReadMaxBytes(MaxRequestBytes),
		// No plugin compresses its handshake (grpc-go, which avalanchego's
		// plugins use, and grpc-js send uncompressed unless told), and
		// inflating before the Authorizer runs is work for anyone who
		// connects: gzip is refused (unimplemented).
		connect.WithCompression("gzip", nil, nil),
		// The answer is an empty message: compressing it only costs time
		// (connect-go would gzip it for every client that offers gzip).
		connect.WithCompressMinBytes(math.MaxInt32),
	}, cfg.handlerOptions...)
	initialize := connect.NewUnaryHandlerSimple(InitializeProcedure, svc.Initialize,
		connect.WithSchema(vmruntime.Initialize()),
		connect.WithHandlerOptions(handlerOpts...),
	)
	handler := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != InitializeProcedure {
			http.NotFound(w, r)
			return
		}
		initialize.ServeHTTP(w, r)
	})
	guarded := requestguard.Wrap(handler, MaxRequestBytes, InitializeProcedure)
	if cfg.authorize == nil {
		return "/" + ServiceName + "/", guarded
	}
	return "/" + ServiceName + "/", http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var authorized bool
		guarded.ServeHTTP(w, r.WithContext(context.WithValue(r.Context(), authorizedKey{}, &authorized)))
		if !authorized {
			_ = cfg.authorize(r.Context(), Call{PeerAddr: r.RemoteAddr, Header: r.Header})
		}
	})
}

// authorizedKey carries a *bool that runtimeService.Initialize sets when
// it has run the Authorizer on its call.
type authorizedKey struct{}

type runtimeService struct {
	initializer vmre.Initializer
	authorize   Authorizer
}

func (s *runtimeService) Initialize(ctx context.Context, req *handshakev1.InitializeRequest) (*emptypb.Empty, error) {
	if s.authorize != nil {
		if authorized, ok := ctx.Value(authorizedKey{}).(*bool); ok {
			*authorized = true
		}
		var call Call
		if info, ok := connect.CallInfoForHandlerContext(ctx); ok {
			call = Call{PeerAddr: info.Peer().Addr, Header: info.RequestHeader()}
		}
		if err := s.authorize(ctx, call); err != nil {
			return nil, toConnectError(err)
		}
	}
	if err := ValidateRequest(req.GetProtocolVersion(), req.GetAddr()); err != nil {
		return nil, toConnectError(err)
	}
	if err := s.initializer.Initialize(ctx, req.GetProtocolVersion(), req.GetAddr()); err != nil {
		return nil, toConnectError(err)
	}
	return &emptypb.Empty{}, nil
}

// ValidateRequest checks an Initialize request's fields: protocolVersion
// must be set (non-zero: proto3 sends an unset field as 0, so a zero is a
// caller that forgot it, not a version) and addr must be a "host:port" with
// a non-empty host and a port in 1..65535. Whether the version is accepted
// is the Initializer's decision. Errors wrap [vmre.ErrInvalidRequest].
func ValidateRequest(protocolVersion uint32, addr string) error {
	if protocolVersion == 0 {
		return invalidf("protocol_version is 0 (unset), want the plugin's protocol version")
	}
	return ValidateAddr(addr)
}

// maxAddrLen bounds an address: the longest DNS name plus a port.
const maxAddrLen = 253 + 1 + 5

// ValidateAddr reports whether addr is a dialable "host:port", optionally
// prefixed with [vmre.TLSAddrPrefix]. Errors wrap [vmre.ErrInvalidRequest].
func ValidateAddr(addr string) error {
	if addr == "" {
		return invalidf("addr is empty, want host:port")
	}
	addr, _ = vmre.CutTLSAddr(addr)
	if len(addr) > maxAddrLen {
		return invalidf("addr is %d bytes long, want at most %d", len(addr), maxAddrLen)
	}
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return invalidf("addr %q is not host:port", addr)
	}
	if host == "" {
		return invalidf("addr %q has no host", addr)
	}
	for _, r := range host {
		if r <= ' ' || r == 0x7f || r == '/' || r == '@' {
			return invalidf("addr %q has a bad character in its host", addr)
		}
	}
	n, err := strconv.ParseUint(port, 10, 16)
	if err != nil || n == 0 {
		return invalidf("addr %q has no valid port (1-65535)", addr)
	}
	return nil
}

// Timeouts and limits applied by [NewHTTPServer].
const (
	ReadHeaderTimeout = 5 * time.Second
	IdleTimeout       = 2 * time.Minute
	MaxHeaderBytes    = 16 << 10
	// MaxConcurrentStreams caps the HTTP/2 streams one connection may have
	// open at once.
	MaxConcurrentStreams = 250
)

// ShutdownTimeout is how long a graceful Shutdown of a server from
// [NewHTTPServer] should wait for requests in flight before closing them:
// vmre run gives its API port this much after its runtimes have stopped.
const ShutdownTimeout = 2 * time.Second

// NewHTTPServer returns an [http.Server] for handler that speaks HTTP/1.1
// and cleartext HTTP/2 with prior knowledge on the same port, with header
// and idle timeouts and header and stream limits set. The caller calls Serve
// and Shutdown.
func NewHTTPServer(handler http.Handler) *http.Server {
	var protocols http.Protocols
	protocols.SetHTTP1(true)
	protocols.SetUnencryptedHTTP2(true)
	return &http.Server{
		Handler:           handler,
		Protocols:         &protocols,
		ReadHeaderTimeout: ReadHeaderTimeout,
		IdleTimeout:       IdleTimeout,
		MaxHeaderBytes:    MaxHeaderBytes,
		HTTP2: &http.HTTP2Config{
			MaxConcurrentStreams: MaxConcurrentStreams,
			MaxReadFrameSize:     1 << 16,
		},
	}
}
