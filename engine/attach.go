package engine

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io/fs"
	"net"
	"net/http"
	"os"
	"slices"
	"strings"
	"syscall"
	"time"

	"connectrpc.com/connect"
	"connectrpc.com/grpcreflect"
	"github.com/vmre/vmre"
	"github.com/vmre/vmre/internal/requestguard"
	"github.com/vmre/vmre/internal/tlsfiles"
	"github.com/vmre/vmre/internal/token"
	"github.com/vmre/vmre/internal/vmruntime"
	"github.com/vmre/vmre/server"
)

// Attach registers a plugin that completed a handshake on the attach
// endpoint as an attached runtime and returns it. The plugin's process is
// not the engine's: it is never stopped or restarted, and the engine sees
// it die only through the liveness probe of [Config.AttachHealth], after
// which the runtime is [StateLost] and moves to the history. A second handshake announcing the VM address of a live
// attached runtime refreshes that runtime instead of adding one. When
// [Config.MaxAttached] runtimes are attached already, the one whose last
// handshake is the oldest is forgotten (watchers see it removed) to make
// room: its plugin is the likeliest to be gone, and a long-running engine
// keeps accepting new plugins. A version outside [Config.AcceptedVersions]
// fails with a [*vmre.VersionMismatchError].
func (e *Engine) Attach(protocolVersion uint32, vmAddr, peerAddr string) (Runtime, error) {
	if !slices.Contains(e.cfg.AcceptedVersions, protocolVersion) {
		return Runtime{}, &vmre.VersionMismatchError{Accepted: slices.Clone(e.cfg.AcceptedVersions), Got: protocolVersion}
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.closed {
		return Runtime{}, ErrClosed
	}
	e.handshakes++
	attached := 0
	var oldest *runtime
	for _, id := range e.order {
		r := e.runtimes[id]
		if !r.info.Attached || r.info.State == StateLost {
			continue
		}
		attached++
		if r.info.VMAddr == vmAddr {
			r.lastHandshake = e.handshakes
			r.info.ProtocolVersion = protocolVersion
			r.info.PeerAddr = peerAddr
			r.info.StartedAt = time.Now()
			e.transitionLocked(r, StateAttached, "handshake repeated from "+peerAddr)
			e.startProbeLocked(r, e.cfg.AttachHealth)
			return r.info.clone(), nil
		}
		if oldest == nil || r.lastHandshake < oldest.lastHandshake {
			oldest = r
		}
	}
	// At the cap (at least 1), the loop has seen an attached runtime of
	// another address, so oldest is set.
	if attached >= e.cfg.MaxAttached {
		e.log.Info().Str("id", oldest.info.ID).Str("addr", oldest.info.VMAddr).Int("max_attached", e.cfg.MaxAttached).
			Msg("forgetting attached runtime with the oldest handshake")
		e.removeLocked(oldest.info.ID)
	}
	r := e.addLocked(Runtime{
		Name:            "attached " + vmAddr,
		Attached:        true,
		VMAddr:          vmAddr,
		ProtocolVersion: protocolVersion,
		StartedAt:       time.Now(),
		PeerAddr:        peerAddr,
	})
	r.lastHandshake = e.handshakes
	r.exited = make(chan struct{})
	e.transitionLocked(r, StateAttached, "attached: handshake from "+peerAddr+"; not ours to stop")
	e.startProbeLocked(r, e.cfg.AttachHealth)
	e.log.Info().Str("id", r.info.ID).Str("addr", vmAddr).Uint32("protocol_version", protocolVersion).
		Str("peer", peerAddr).Msg("runtime attached")
	return r.info.clone(), nil
}

// attachInitializer adapts [Engine.Attach] to vmre.Initializer.
type attachInitializer struct{ e *Engine }

var _ vmre.Initializer = attachInitializer{}

func (a attachInitializer) Initialize(ctx context.Context, protocolVersion uint32, vmAddr string) error {
	var peer string
	if info, ok := connect.CallInfoForHandlerContext(ctx); ok {
		peer = info.Peer().Addr
	}
	_, err := a.e.Attach(protocolVersion, vmAddr, peer)
	if errors.Is(err, ErrClosed) {
		return connect.NewError(connect.CodeUnavailable, err)
	}
	return err
}

// AttachEndpoint is a handshake endpoint that registers every plugin that
// handshakes with the right token as an attached runtime. Create it with
// [Engine.ServeAttach] or [Engine.ServeAttachConfig].
type AttachEndpoint struct {
	srv  *http.Server
	lis  net.Listener
	addr string
	tls  bool
	done chan struct{}
}

// AttachConfig configures [Engine.ServeAttachConfig].
type AttachConfig struct {
	// Addr is where the endpoint listens: "host:port" (default
	// "127.0.0.1:0"), or "unix:/path" for a unix socket, created with mode
	// 0600 and removed by [AttachEndpoint.Close]. A socket file left at
	// the path by a process that is gone is removed first; anything else
	// there (a live socket, a regular file) makes the call fail.
	Addr string
	// Token is the secret every handshake must carry in the
	// [vmre.HandshakeTokenHeader] header. It must pass token.Check (at
	// least 16 bytes, no white space).
	Token string
	// TokenFile, if set instead of Token, names a file holding the secret
	// (mode 0600). It is stat'ed at every handshake and re-read when it
	// changes: the new token works at once and the old one stops working.
	// While the file is unreadable or invalid, every handshake is refused.
	TokenFile string
	// TLS, if set, serves the endpoint over TLS with this configuration
	// (HTTP/2 chosen by ALPN, HTTP/1.1 kept), e.g. one that requires
	// client certificates. Nil: cleartext, HTTP/1.1 and h2c.
	TLS *tls.Config
}

// ServeAttach opens a handshake endpoint on addr (default "127.0.0.1:0")
// whose handshakes must carry secret; it is [Engine.ServeAttachConfig]
// with only Addr and Token set.
func (e *Engine) ServeAttach(addr, secret string) (*AttachEndpoint, error) {
	return e.ServeAttachConfig(AttachConfig{Addr: addr, Token: secret})
}

// ServeAttachConfig opens a handshake endpoint as cfg says and serves it in
// the background until [AttachEndpoint.Close]. Every Initialize call must
// carry the token in the [vmre.HandshakeTokenHeader] header, else it fails
// with unauthenticated. A bad token or token file fails with
// [vmre.ErrInvalidConfig]. Valid handshakes become attached runtimes (see
// [Engine.Attach]).
func (e *Engine) ServeAttachConfig(cfg AttachConfig) (*AttachEndpoint, error) {
	secret, err := attachTokens(cfg.Token, cfg.TokenFile)
	if err != nil {
		return nil, err
	}
	authorize := func(_ context.Context, call server.Call) error {
		presented := call.Header.Get(vmre.HandshakeTokenHeader)
		if presented == "" {
			e.cfg.Refusals.Add(server.RefusedNoToken)
			return fmt.Errorf("%w: missing %s header", vmre.ErrUnauthenticated, vmre.HandshakeTokenHeader)
		}
		expected, err := secret()
		if err != nil {
			e.log.Warn().Err(err).Msg("attach token file refused; refusing handshakes until it is fixed")
		}
		if !token.Equal(presented, expected) {
			e.cfg.Refusals.Add(server.RefusedBadToken)
			return fmt.Errorf("%w: wrong %s", vmre.ErrUnauthenticated, vmre.HandshakeTokenHeader)
		}
		return nil
	}
	path, h := server.NewHandler(attachInitializer{e}, server.WithAuthorizer(authorize))
	mux := http.NewServeMux()
	mux.Handle(path, h)
	// Reflection needs no token: it describes the public contract only,
	// so grpcurl and buf curl can call Initialize without proto files.
	reflector := vmruntime.NewReflector(vmruntime.ServiceName, grpcreflect.ReflectV1ServiceName, grpcreflect.ReflectV1AlphaServiceName)
	limit := connect.WithHandlerOptions(connect.WithReadMaxBytes(server.MaxRequestBytes), requestguard.BoundedGzip(server.MaxRequestBytes))
	mux.Handle(grpcreflect.NewHandlerV1(reflector, limit))
	mux.Handle(grpcreflect.NewHandlerV1Alpha(reflector, limit))
	lis, addr, err := listenAttach(cfg.Addr)
	if err != nil {
		return nil, err
	}
	srv := server.NewHTTPServer(mux)
	srv.ErrorLog = server.NewErrorLog(e.log)
	a := &AttachEndpoint{srv: srv, lis: lis, addr: addr, tls: cfg.TLS != nil, done: make(chan struct{})}
	go func() {
		defer close(a.done)
		var err error
		if cfg.TLS != nil {
			err = tlsfiles.Serve(a.srv, lis, cfg.TLS)
		} else {
			err = a.srv.Serve(lis)
		}
		if err != nil && !errors.Is(err, http.ErrServerClosed) {
			e.log.Error().Err(err).Msg("attach endpoint stopped")
		}
	}()
	e.log.Info().Str("addr", addr).Bool("tls", a.tls).Msg("attach endpoint listening")
	return a, nil
}

// attachTokens returns the attach secret: fixed, or kept in file.
func attachTokens(fixed, file string) (func() (string, error), error) {
	switch {
	case fixed != "" && file != "":
		return nil, fmt.Errorf("%w: attach endpoint: token and token file are both set", vmre.ErrInvalidConfig)
	case file != "":
		f, err := token.OpenFile(file)
		if err != nil {
			return nil, fmt.Errorf("attach endpoint: %w", err)
		}
		return f.Token, nil
	}
	if err := token.Check(fixed); err != nil {
		return nil, fmt.Errorf("%w: attach endpoint: %w", vmre.ErrInvalidConfig, err)
	}
	return func() (string, error) { return fixed, nil }, nil
}

// UnixAddrPrefix marks an [AttachConfig.Addr] that is a unix socket path.
const UnixAddrPrefix = "unix:"

// listenAttach opens the endpoint's listener and returns it with the
// address to print: "host:port" or "unix:/path".
func listenAttach(addr string) (net.Listener, string, error) {
	path, isUnix := strings.CutPrefix(addr, UnixAddrPrefix)
	if !isUnix {
		if addr == "" {
			addr = "127.0.0.1:0"
		}
		lis, err := net.Listen("tcp", addr)
		if err != nil {
			return nil, "", fmt.Errorf("listen for attach handshakes: %w", err)
		}
		return lis, lis.Addr().String(), nil
	}
	if path == "" {
		return nil, "", fmt.Errorf("%w: attach address %q has no socket path", vmre.ErrInvalidConfig, addr)
	}
	if err := removeStaleSocket(path); err != nil {
		return nil, "", err
	}
	lis, err := net.Listen("unix", path)
	if err != nil {
		return nil, "", fmt.Errorf("listen for attach handshakes: %w", err)
	}
	// The token guards the handshake anyway; the mode keeps other users
	// from even reaching it. Sidecars of the same user share the socket.
	if err := os.Chmod(path, 0o600); err != nil {
		_ = lis.Close()
		return nil, "", fmt.Errorf("listen for attach handshakes: %w", err)
	}
	return lis, UnixAddrPrefix + path, nil
}

// removeStaleSocket removes a socket file at path that nothing listens on
// any more (left by a vmre that was killed). A socket that answers, or a
// file that is not a socket, is left alone and reported.
func removeStaleSocket(path string) error {
	info, err := os.Lstat(path)
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("listen for attach handshakes: %w", err)
	}
	if info.Mode().Type() != fs.ModeSocket {
		return fmt.Errorf("%w: attach socket path %s exists and is not a socket", vmre.ErrInvalidConfig, path)
	}
	conn, err := net.DialTimeout("unix", path, time.Second)
	if err == nil {
		_ = conn.Close()
		return fmt.Errorf("listen for attach handshakes: %s: another process listens on it", path)
	}
	if !errors.Is(err, syscall.ECONNREFUSED) {
		return fmt.Errorf("listen for attach handshakes: probe stale socket: %w", err)
	}
	if err := os.Remove(path); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("listen for attach handshakes: remove stale socket: %w", err)
	}
	return nil
}

// Addr returns the endpoint's "host:port", or "unix:/path" for a unix
// socket: the form [vmre.EngineAddressKey] takes for vmre's client.
func (a *AttachEndpoint) Addr() string { return a.addr }

// TLS reports whether the endpoint is served over TLS.
func (a *AttachEndpoint) TLS() bool { return a.tls }

// Close stops the endpoint: it stops accepting handshakes and waits for
// calls in flight until ctx is done. Attached runtimes stay registered.
func (a *AttachEndpoint) Close(ctx context.Context) error {
	err := a.srv.Shutdown(ctx)
	if err != nil {
		_ = a.srv.Close()
	}
	<-a.done
	if err != nil {
		return fmt.Errorf("close attach endpoint: %w", err)
	}
	return nil
}
