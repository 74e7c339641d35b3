package engine

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"slices"
	"time"

	"connectrpc.com/connect"
	"connectrpc.com/grpcreflect"
	"github.com/vmre/vmre"
	"github.com/vmre/vmre/internal/requestguard"
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
// [Engine.ServeAttach].
type AttachEndpoint struct {
	srv  *http.Server
	lis  net.Listener
	done chan struct{}
}

// ServeAttach opens a handshake endpoint on addr (default "127.0.0.1:0")
// and serves it in the background until [AttachEndpoint.Close]. Every
// Initialize call must carry secret in the [vmre.HandshakeTokenHeader]
// header, else it fails with unauthenticated; secret must pass
// token.Check (at least 16 bytes, no white space), else ServeAttach fails
// with [vmre.ErrInvalidConfig]. Valid handshakes become attached runtimes
// (see [Engine.Attach]).
func (e *Engine) ServeAttach(addr, secret string) (*AttachEndpoint, error) {
	if err := token.Check(secret); err != nil {
		return nil, fmt.Errorf("%w: attach endpoint: %w", vmre.ErrInvalidConfig, err)
	}
	if addr == "" {
		addr = "127.0.0.1:0"
	}
	authorize := func(_ context.Context, call server.Call) error {
		presented := call.Header.Get(vmre.HandshakeTokenHeader)
		if presented == "" {
			e.cfg.Refusals.Add(server.RefusedNoToken)
			return fmt.Errorf("%w: missing %s header", vmre.ErrUnauthenticated, vmre.HandshakeTokenHeader)
		}
		if !token.Equal(presented, secret) {
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
	lis, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("listen for attach handshakes: %w", err)
	}
	srv := server.NewHTTPServer(mux)
	srv.ErrorLog = server.NewErrorLog(e.log)
	a := &AttachEndpoint{srv: srv, lis: lis, done: make(chan struct{})}
	go func() {
		defer close(a.done)
		if err := a.srv.Serve(lis); err != nil && !errors.Is(err, http.ErrServerClosed) {
			e.log.Error().Err(err).Msg("attach endpoint stopped")
		}
	}()
	e.log.Info().Str("addr", lis.Addr().String()).Msg("attach endpoint listening")
	return a, nil
}

// Addr returns the endpoint's "host:port".
func (a *AttachEndpoint) Addr() string { return a.lis.Addr().String() }

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
