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
	"unicode"
	"unicode/utf8"

	"connectrpc.com/connect"
	"github.com/vmre/vmre"
	"github.com/vmre/vmre/internal/reflection"
	"github.com/vmre/vmre/internal/requestguard"
	"github.com/vmre/vmre/internal/tlsfiles"
	"github.com/vmre/vmre/internal/token"
	"github.com/vmre/vmre/internal/vmruntime"
	"github.com/vmre/vmre/server"
)

// Attach registers a plugin that completed a handshake on the attach
// endpoint; it is [Engine.AttachWith] with no name and no instance, so the
// runtime is named "attached " + vmAddr.
func (e *Engine) Attach(protocolVersion uint32, vmAddr, peerAddr string) (Runtime, error) {
	return e.AttachWith(AttachRequest{ProtocolVersion: protocolVersion, VMAddr: vmAddr, PeerAddr: peerAddr})
}

// AttachRequest is one handshake on the attach endpoint.
type AttachRequest struct {
	// Name identifies the VM across its handshakes, its restarts and the
	// engine's: vmre's client sends it in [vmre.RuntimeNameHeader]
	// ([vmre.RuntimeNameKey] in the plugin's environment). Default:
	// "attached " + VMAddr, so that a VM without a name is known by its
	// address.
	Name string
	// Instance identifies one process of the VM: vmre's client sends a
	// random one per client.KeepAttached call in
	// [vmre.AttachInstanceHeader]. A handshake repeating the instance and
	// address of a live runtime only refreshes it. Empty: every handshake
	// is a new incarnation.
	Instance        string
	ProtocolVersion uint32
	VMAddr          string
	PeerAddr        string
}

// AttachWith registers a plugin that completed a handshake on the attach
// endpoint as an attached runtime and returns it. The plugin's process is
// not the engine's: it is never stopped or restarted, and the engine sees
// it die only through the liveness probe of [Config.AttachHealth], after
// which the runtime is [StateLost] and moves to the history.
//
// A handshake under the name of an attached runtime, live or lost, is that
// runtime again: same id, and a new incarnation (a new StartedAt, state
// attached, its probe restarted, an event saying so), unless it repeats
// the live runtime's non-empty Instance and its address, which only
// refreshes it (no event). When [Config.MaxAttached] runtimes are attached
// already, the one whose last handshake is the oldest is forgotten
// (watchers see it removed) to make room: its plugin is the likeliest to be
// gone, and a long-running engine keeps accepting new plugins. A version
// outside [Config.AcceptedVersions] fails with a
// [*vmre.VersionMismatchError].
func (e *Engine) AttachWith(req AttachRequest) (Runtime, error) {
	if !slices.Contains(e.cfg.AcceptedVersions, req.ProtocolVersion) {
		return Runtime{}, &vmre.VersionMismatchError{Accepted: slices.Clone(e.cfg.AcceptedVersions), Got: req.ProtocolVersion}
	}
	name := req.Name
	if name == "" {
		name = "attached " + req.VMAddr
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.closed {
		return Runtime{}, ErrClosed
	}
	e.handshakes++
	attached := 0
	var same, oldest *runtime
	for _, id := range e.order {
		r := e.runtimes[id]
		if !r.info.Attached {
			continue
		}
		if r.info.Name == name {
			same = r
		}
		if r.info.State == StateLost {
			continue
		}
		attached++
		if r != same && (oldest == nil || r.lastHandshake < oldest.lastHandshake) {
			oldest = r
		}
	}
	if same != nil && same.info.State != StateLost && req.Instance != "" &&
		req.Instance == same.instance && req.VMAddr == same.info.VMAddr {
		same.lastHandshake = e.handshakes
		same.info.PeerAddr = req.PeerAddr
		return same.info.clone(), nil
	}
	// A live runtime of this name holds its own place; any other one
	// needs a free place. At the cap (at least 1), the loop has seen an
	// attached runtime of another name, so oldest is set.
	if (same == nil || same.info.State == StateLost) && attached >= e.cfg.MaxAttached {
		e.log.Info().Str("id", oldest.info.ID).Str("addr", oldest.info.VMAddr).Int("max_attached", e.cfg.MaxAttached).
			Msg("forgetting attached runtime with the oldest handshake")
		e.removeLocked(oldest.info.ID)
	}
	if same != nil {
		return e.reattachLocked(same, req), nil
	}
	r := e.addLocked(Runtime{
		Name:            name,
		Attached:        true,
		VMAddr:          req.VMAddr,
		ProtocolVersion: req.ProtocolVersion,
		StartedAt:       time.Now(),
		PeerAddr:        req.PeerAddr,
	})
	r.lastHandshake = e.handshakes
	r.instance = req.Instance
	r.exited = make(chan struct{})
	e.transitionLocked(r, StateAttached, "attached: handshake from "+req.PeerAddr+"; not ours to stop")
	e.startProbeLocked(r, e.cfg.AttachHealth)
	e.log.Info().Str("id", r.info.ID).Str("vm", name).Str("addr", req.VMAddr).Uint32("protocol_version", req.ProtocolVersion).
		Str("peer", req.PeerAddr).Msg("runtime attached")
	return r.info.clone(), nil
}

// reattachLocked makes r, an attached runtime live or lost, a new
// incarnation of the VM that handshook with req. The caller holds e.mu.
func (e *Engine) reattachLocked(r *runtime, req AttachRequest) Runtime {
	why := "re-attached: new incarnation, handshake from " + req.PeerAddr
	if r.inHistory {
		r.inHistory = false
		e.history = slices.DeleteFunc(e.history, func(id string) bool { return id == r.info.ID })
		why = "re-attached after it was lost: handshake from " + req.PeerAddr
	}
	r.lastHandshake = e.handshakes
	r.instance = req.Instance
	r.info.VMAddr, r.info.ProtocolVersion, r.info.PeerAddr = req.VMAddr, req.ProtocolVersion, req.PeerAddr
	r.info.StartedAt, r.info.ExitedAt, r.info.LastError = time.Now(), time.Time{}, ""
	r.exited = make(chan struct{})
	e.transitionLocked(r, StateAttached, why)
	e.startProbeLocked(r, e.cfg.AttachHealth)
	e.log.Info().Str("id", r.info.ID).Str("vm", r.info.Name).Str("addr", req.VMAddr).Str("peer", req.PeerAddr).
		Msg("runtime re-attached")
	return r.info.clone()
}

// attachInitializer adapts [Engine.Attach] to vmre.Initializer.
type attachInitializer struct{ e *Engine }

var _ vmre.Initializer = attachInitializer{}

func (a attachInitializer) Initialize(ctx context.Context, protocolVersion uint32, vmAddr string) error {
	req := AttachRequest{ProtocolVersion: protocolVersion, VMAddr: vmAddr}
	if info, ok := connect.CallInfoForHandlerContext(ctx); ok {
		req.PeerAddr = info.Peer().Addr
		req.Name = info.RequestHeader().Get(vmre.RuntimeNameHeader)
		req.Instance = info.RequestHeader().Get(vmre.AttachInstanceHeader)
	}
	if err := checkAttachName(req.Name); err != nil {
		return err
	}
	_, err := a.e.AttachWith(req)
	if errors.Is(err, ErrClosed) {
		return connect.NewError(connect.CodeUnavailable, err)
	}
	return err
}

// maxNameLen bounds an attached runtime's name.
const maxNameLen = 128

// checkAttachName refuses a name that would garble logs and listings:
// longer than maxNameLen bytes, not UTF-8, or with control characters.
func checkAttachName(name string) error {
	if len(name) > maxNameLen {
		return fmt.Errorf("%w: %s is %d bytes, want at most %d", vmre.ErrInvalidRequest, vmre.RuntimeNameHeader, len(name), maxNameLen)
	}
	if !utf8.ValidString(name) || strings.ContainsFunc(name, unicode.IsControl) {
		return fmt.Errorf("%w: %s holds control characters or invalid UTF-8", vmre.ErrInvalidRequest, vmre.RuntimeNameHeader)
	}
	return nil
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
	reflector := reflection.New([]string{vmruntime.ServiceName, reflection.ServiceV1, reflection.ServiceV1Alpha}, vmruntime.Registry{})
	limit := connect.WithHandlerOptions(connect.WithReadMaxBytes(server.MaxRequestBytes), requestguard.BoundedGzip(server.MaxRequestBytes))
	mux.Handle(reflector.HandlerV1(limit))
	mux.Handle(reflector.HandlerV1Alpha(limit))
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
