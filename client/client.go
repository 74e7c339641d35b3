// Package client calls the vm.runtime.Runtime handshake service of a VM
// runtime engine: it is what a VM plugin uses to tell the engine which
// protocol version it speaks and where its own gRPC server listens.
//
// A [Client] implements [vmre.Initializer] over the network. By default it
// speaks the gRPC protocol over cleartext HTTP/2 with prior knowledge (h2c),
// the only form a plain grpc-go server understands, so it handshakes with
// vmre's own engine ([github.com/vmre/vmre/server]) and with avalanchego's
// and luxd's engines alike. [WithProtocol] switches to gRPC-Web or to the
// Connect protocol with JSON (exactly what curl sends), both over HTTP/1.1.
// The request is vmre's own copy of vm.runtime.InitializeRequest (the same
// bytes on the wire), so the package registers no vm.runtime name in the
// global protobuf registry and links into plugins built on avalanchego's
// rpcchainvm.
//
// A plugin normally needs a single call: [Handshake] reads the engine's
// address (and the optional handshake token) from the environment the engine
// launched it with and performs the handshake.
//
// Every error returned by [Client.Initialize] and [Handshake] wraps
// [vmre.ErrHandshakeFailed] and, where the failure has one, the sentinel
// that classifies it; test with [errors.Is]. The status code decides the
// sentinel:
//
//	invalid_argument     vmre.ErrInvalidRequest
//	failed_precondition  vmre.ErrProtocolVersionMismatch
//	already_exists       vmre.ErrAlreadyInitialized
//	unauthenticated      vmre.ErrUnauthenticated
//	permission_denied    vmre.ErrPermissionDenied
//	deadline_exceeded    vmre.ErrHandshakeTimeout
//	unavailable          vmre.ErrProcessNotFound (the engine cannot be reached)
//	not_found            vmre.ErrProcessNotFound
//	unknown              vmre.ErrProtocolVersionMismatch if the message says
//	                     "protocol version mismatch" (avalanchego's and luxd's
//	                     grpc-go engines send their mismatch this way)
//
// Other codes wrap no further sentinel. A bad address or option wraps
// [vmre.ErrInvalidConfig]. Errors that came from the wire also wrap the
// *[connect.Error], so [connect.CodeOf] reports the status code, and the
// caller's context error ([context.DeadlineExceeded], [context.Canceled])
// stays reachable. Error texts keep the engine's words:
//
//	handshake failed: protocol version mismatch engine: 42 vm: 41
//	handshake failed: vm process not found: dial tcp 127.0.0.1:9660: connect: connection refused
//
// Configuration: a [Client] wraps a connect client, so its settings are
// connect-style functional options ([Option]).
package client

import (
	"context"
	"crypto/tls"
	"fmt"
	"net"
	"net/http"
	"strings"
	"time"

	"connectrpc.com/connect"
	"github.com/vmre/vmre"
	handshakev1 "github.com/vmre/vmre/gen/vmre/handshake/v1"
	"github.com/vmre/vmre/internal/tlsfiles"
	"github.com/vmre/vmre/internal/vmruntime"
	"google.golang.org/protobuf/types/known/emptypb"
)

// Protocol selects the RPC protocol a [Client] speaks.
type Protocol int

const (
	// ProtocolGRPC is the gRPC protocol over cleartext HTTP/2 with prior
	// knowledge (h2c). It is the default and the one grpc-go servers, such
	// as avalanchego's engine, require.
	ProtocolGRPC Protocol = iota
	// ProtocolGRPCWeb is the gRPC-Web protocol over HTTP/1.1, with binary
	// protobuf messages.
	ProtocolGRPCWeb
	// ProtocolConnect is the Connect protocol over HTTP/1.1 with JSON
	// messages: a POST of {"protocolVersion":42,"addr":"..."} with
	// Content-Type application/json, the same request curl sends.
	ProtocolConnect
)

// String returns "grpc", "grpcweb" or "connect".
func (p Protocol) String() string {
	switch p {
	case ProtocolGRPC:
		return "grpc"
	case ProtocolGRPCWeb:
		return "grpcweb"
	case ProtocolConnect:
		return "connect"
	default:
		return fmt.Sprintf("Protocol(%d)", int(p))
	}
}

// Option configures a [Client].
type Option interface {
	apply(*config)
}

type optionFunc func(*config)

func (f optionFunc) apply(c *config) { f(c) }

type config struct {
	protocol   Protocol
	httpClient *http.Client
	token      string
	tls        *tls.Config
	useTLS     bool
	name       string
	instance   string
}

// WithName sends name in the [vmre.RuntimeNameHeader] request header: the
// name under which an engine's attach endpoint registers the VM. A VM
// that attaches again under the same name, after its own restart or the
// engine's, is the same runtime (same id) in a new incarnation. The
// default (empty) sends no header, and the engine names the runtime after
// its address. Launching engines ignore it. [Handshake] and
// [KeepAttached] take it from [vmre.RuntimeNameKey] when that is set.
func WithName(name string) Option {
	return optionFunc(func(c *config) { c.name = name })
}

// withInstance sends instance in the [vmre.AttachInstanceHeader] header
// (see [Attacher]).
func withInstance(instance string) Option {
	return optionFunc(func(c *config) { c.instance = instance })
}

// WithTLS makes the Client speak TLS to the engine with cfg (nil: verify
// the engine's certificate against the system's roots, present none):
// HTTP/2 chosen by ALPN for [ProtocolGRPC], HTTP/1.1 otherwise. A
// "host:port" engine address is then reached as https://host:port. It is
// what a plugin on another host needs for an engine started with
// `vmre run --tls-cert`; give cfg a client certificate (Certificates or
// GetClientCertificate) for one started with --client-ca too.
// [TLSFromFiles] builds cfg from PEM files. It has no effect together with
// [WithHTTPClient], whose transport decides.
func WithTLS(cfg *tls.Config) Option {
	return optionFunc(func(c *config) {
		c.tls, c.useTLS = cfg, true
	})
}

// TLSFromFiles returns a TLS client configuration that trusts the CA
// certificates in the PEM file caFile (the system's roots if empty) and,
// if certFile and keyFile are set, presents that client certificate,
// re-reading the two files whenever they change (a rotated certificate is
// used from the next connection on). It fails, wrapping
// [vmre.ErrInvalidConfig], if a file cannot be read or parsed.
func TLSFromFiles(caFile, certFile, keyFile string) (*tls.Config, error) {
	cfg, err := tlsfiles.ClientConfig(caFile, certFile, keyFile)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", vmre.ErrInvalidConfig, err)
	}
	return cfg, nil
}

// WithProtocol selects the protocol (default [ProtocolGRPC]). An unknown
// value makes every Initialize call fail with [vmre.ErrInvalidConfig].
func WithProtocol(p Protocol) Option {
	return optionFunc(func(c *config) { c.protocol = p })
}

// WithHTTPClient makes the Client send its requests through httpClient
// instead of a transport of its own. The caller then owns the connections:
// [Client.Close] leaves them alone. The client must be able to speak the
// chosen protocol to the engine; for [ProtocolGRPC] against a grpc-go
// server that means HTTP/2 (h2c for an http:// engine). A nil httpClient is
// ignored.
func WithHTTPClient(httpClient *http.Client) Option {
	return optionFunc(func(c *config) {
		if httpClient != nil {
			c.httpClient = httpClient
		}
	})
}

// WithToken sends token in the [vmre.HandshakeTokenHeader] request header
// of every Initialize call, for an engine that admits handshakes by the
// secret it handed its plugin. The token shows that the caller knows the
// secret, not that it is the launched plugin: other processes of the same
// user can read it from the plugin's environment. An empty token sends no
// header (the default). Request headers the caller sets through
// its own [connect.NewClientContext] are sent alongside (the token wins
// over a header of the same name), and its response headers and trailers
// stay readable there.
func WithToken(token string) Option {
	return optionFunc(func(c *config) { c.token = token })
}

// Client calls an engine's Initialize RPC. Create it with [New]; the zero
// value is not usable (its Initialize fails with [vmre.ErrInvalidConfig]).
// A Client is safe for concurrent use by multiple goroutines and holds no
// state between calls other than pooled connections.
type Client struct {
	rpc *connect.Client[handshakev1.InitializeRequest, emptypb.Empty]
	// ownTransport is the transport New built, nil under WithHTTPClient.
	ownTransport *http.Transport
	// err is a configuration error reported by every Initialize call.
	err error
}

var _ vmre.Initializer = (*Client)(nil)

// Dial and idle limits of the transport New builds. The engine normally
// listens on the loopback interface, so a connection that takes longer than
// a few seconds to establish is not coming.
const (
	dialTimeout     = 5 * time.Second
	idleConnTimeout = 90 * time.Second
)

// New returns a Client for the engine at engineAddr, which is a "host:port"
// as an engine hands it to its plugins in the environment, a base URL such
// as "http://127.0.0.1:9660" or "https://engine.example:9661", or
// "unix:/path/attach.sock" for an engine's attach endpoint on a unix socket
// (`vmre run --attach-listen unix:/path`). New never blocks and opens no
// connection; a bad address or option is reported, wrapping
// [vmre.ErrInvalidConfig], by each Initialize call.
//
// Unless [WithHTTPClient] is given, the Client gets a transport of its own:
// for an http:// engine, h2c with prior knowledge for [ProtocolGRPC] and
// HTTP/1.1 otherwise; for an https:// engine (or any engine under
// [WithTLS]), TLS with HTTP/2 by ALPN for [ProtocolGRPC] and HTTP/1.1
// otherwise. It uses no proxy. Call [Client.Close] to release its idle
// connections.
func New(engineAddr string, opts ...Option) *Client {
	var cfg config
	for _, o := range opts {
		o.apply(&cfg)
	}
	c := &Client{}

	base, socket, err := engineURL(engineAddr, cfg.useTLS)
	if err != nil {
		c.err = err
		return c
	}
	useTLS := strings.HasPrefix(base, "https://")
	var (
		connectOpts []connect.ClientOption
		protocols   http.Protocols
	)
	switch cfg.protocol {
	case ProtocolGRPC:
		connectOpts = append(connectOpts, connect.WithGRPC())
		// HTTP/2 only: grpc-go servers speak nothing else, and a
		// Transport that also allows HTTP/1 would use it for http://.
		if useTLS {
			protocols.SetHTTP2(true)
		} else {
			protocols.SetUnencryptedHTTP2(true)
		}
	case ProtocolGRPCWeb:
		connectOpts = append(connectOpts, connect.WithGRPCWeb())
		protocols.SetHTTP1(true)
	case ProtocolConnect:
		connectOpts = append(connectOpts, connect.WithProtoJSON())
		protocols.SetHTTP1(true)
	default:
		c.err = fmt.Errorf("%w: unknown protocol %d", vmre.ErrInvalidConfig, int(cfg.protocol))
		return c
	}

	httpClient := cfg.httpClient
	if httpClient == nil {
		dialer := &net.Dialer{Timeout: dialTimeout, KeepAlive: 30 * time.Second}
		dial := dialer.DialContext
		if socket != "" {
			dial = func(ctx context.Context, _, _ string) (net.Conn, error) {
				return dialer.DialContext(ctx, "unix", socket)
			}
		}
		c.ownTransport = &http.Transport{
			Protocols:           &protocols,
			DialContext:         dial,
			IdleConnTimeout:     idleConnTimeout,
			MaxIdleConnsPerHost: 8,
		}
		if cfg.tls != nil {
			c.ownTransport.TLSClientConfig = cfg.tls.Clone()
		}
		httpClient = &http.Client{Transport: c.ownTransport}
	}
	if headers := cfg.headers(); len(headers) > 0 {
		connectOpts = append(connectOpts, connect.WithInterceptors(headerInterceptor(headers)))
	}
	c.rpc = connect.NewClient[handshakev1.InitializeRequest, emptypb.Empty](httpClient,
		strings.TrimRight(base, "/")+vmruntime.InitializeProcedure,
		connect.WithSchema(vmruntime.Initialize()),
		connect.WithClientOptions(connectOpts...),
	)
	return c
}

// headers returns the request headers the options ask for.
func (c *config) headers() map[string]string {
	h := map[string]string{}
	for key, value := range map[string]string{
		vmre.HandshakeTokenHeader: c.token, vmre.RuntimeNameHeader: c.name, vmre.AttachInstanceHeader: c.instance,
	} {
		if value != "" {
			h[key] = value
		}
	}
	return h
}

// headerInterceptor sets headers on each request. It works on the
// request rather than through a call info in the context: a new call info
// would hide the one the caller may have put there (connect.NewClientContext),
// whose request headers would then not be sent and whose response headers
// would stay empty.
func headerInterceptor(headers map[string]string) connect.UnaryInterceptorFunc {
	return func(next connect.UnaryFunc) connect.UnaryFunc {
		return func(ctx context.Context, req connect.AnyRequest) (connect.AnyResponse, error) {
			for key, value := range headers {
				req.Header().Set(key, value)
			}
			return next(ctx, req)
		}
	}
}

// unixAddrPrefix marks an engine address that is a unix socket path.
const unixAddrPrefix = "unix:"

// engineURL turns an engine address into the base URL of its services and,
// for a unix socket, the socket's path. A "host:port" or unix socket is
// reached over https when useTLS is set.
func engineURL(engineAddr string, useTLS bool) (base, socket string, err error) {
	scheme := "http://"
	if useTLS {
		scheme = "https://"
	}
	switch {
	case engineAddr == "":
		return "", "", fmt.Errorf("%w: engine address is empty, want host:port", vmre.ErrInvalidConfig)
	case strings.HasPrefix(engineAddr, "http://"):
		if useTLS {
			return "", "", fmt.Errorf("%w: engine address %q is http:// but TLS is asked for", vmre.ErrInvalidConfig, engineAddr)
		}
		return engineAddr, "", nil
	case strings.HasPrefix(engineAddr, "https://"):
		return engineAddr, "", nil
	case strings.HasPrefix(engineAddr, unixAddrPrefix):
		socket = strings.TrimPrefix(engineAddr, unixAddrPrefix)
		if socket == "" {
			return "", "", fmt.Errorf("%w: engine address %q has no socket path", vmre.ErrInvalidConfig, engineAddr)
		}
		// The host names nothing but the request's :authority; every
		// connection goes to the socket.
		return scheme + "localhost", socket, nil
	}
	if _, _, err := net.SplitHostPort(engineAddr); err != nil {
		return "", "", fmt.Errorf("%w: engine address %q is not host:port: %w", vmre.ErrInvalidConfig, engineAddr, err)
	}
	return scheme + engineAddr, "", nil
}

// Initialize performs the handshake: it sends protocolVersion and vmAddr,
// the address of the plugin's own gRPC server, to the engine and blocks
// until the engine answers or ctx is done. It returns nil when the engine
// accepted the plugin. It makes exactly one attempt; whether a second call
// succeeds is the engine's decision (vmre's engine refuses it with
// [vmre.ErrAlreadyInitialized]).
//
// On failure the error wraps [vmre.ErrHandshakeFailed] and the sentinel of
// its status code, and reads like "handshake failed: protocol version
// mismatch engine: 42 vm: 41"; see the package documentation.
func (c *Client) Initialize(ctx context.Context, protocolVersion uint32, vmAddr string) error {
	if c.err != nil {
		return fmt.Errorf("%w: %w", vmre.ErrHandshakeFailed, c.err)
	}
	if c.rpc == nil {
		return fmt.Errorf("%w: %w: client not created with client.New", vmre.ErrHandshakeFailed, vmre.ErrInvalidConfig)
	}
	_, err := c.rpc.CallUnary(ctx, connect.NewRequest(&handshakev1.InitializeRequest{
		ProtocolVersion: protocolVersion,
		Addr:            vmAddr,
	}))
	if err != nil {
		if connect.CodeOf(err) == connect.CodeDeadlineExceeded {
			// The engine enforces the caller's deadline too (it travels
			// with the call) and may report it a moment before ctx
			// expires here; wait that moment, so that the error also
			// matches context.DeadlineExceeded.
			if deadline, ok := ctx.Deadline(); ok && time.Until(deadline) <= deadlineSkew {
				<-ctx.Done()
			}
		}
		return fromWire(ctx, err)
	}
	return nil
}

// deadlineSkew bounds how much earlier than the caller the engine may
// report the caller's deadline: the call's travel time, and scheduling.
const deadlineSkew = 100 * time.Millisecond

// Close closes the idle connections of the transport New built; a plugin
// calls it once its handshake is done, as it will not talk to the engine's
// handshake port again. It does not touch a client given with
// [WithHTTPClient]. Close never blocks, is idempotent and safe for
// concurrent use, and the Client remains usable: a later Initialize opens a
// new connection.
func (c *Client) Close() {
	if c.ownTransport != nil {
		c.ownTransport.CloseIdleConnections()
	}
}
