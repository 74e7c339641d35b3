// Package examplevm is a minimal VM plugin built only on vmre's client
// package: it listens for its own gRPC server on 127.0.0.1:0, serves the
// standard grpc.health.v1 service there, performs the handshake with the
// engine named in its environment, logs a few structured lines, and exits
// cleanly when asked to stop.
//
// It is what `vmre run` launches when no plugin path is given, and a
// template for plugin authors: the whole handshake is the one call to
// [client.Handshake].
package examplevm

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"time"

	"connectrpc.com/grpchealth"
	"github.com/rs/zerolog"
	"github.com/vmre/vmre"
	"github.com/vmre/vmre/client"
	"github.com/vmre/vmre/server"
)

// Config tunes the example VM. The zero value is ready to use.
type Config struct {
	// ProtocolVersion is announced in the handshake; default
	// vmre.ProtocolVersion.
	ProtocolVersion uint32
	// Heartbeat is the interval of the "heartbeat" log line; default 2s.
	Heartbeat time.Duration
	// KeepAttached makes the VM attach with client.KeepAttached instead of
	// one handshake: for a VM started outside the engine (a sidecar), which
	// retries until an attach endpoint accepts it and registers again
	// after the engine restarts. Its name comes from VMRE_RUNTIME_NAME.
	KeepAttached bool
	// AttachRefresh is the interval of KeepAttached's refreshing
	// handshakes; default client.DefaultRefresh.
	AttachRefresh time.Duration
}

// Run serves the VM until ctx is done, then shuts its server down and
// returns nil. Log lines go to log as JSON, so the engine keeps their levels.
// It returns an error if it cannot listen or the handshake is refused.
func Run(ctx context.Context, log zerolog.Logger, cfg Config) error {
	if cfg.ProtocolVersion == 0 {
		cfg.ProtocolVersion = vmre.ProtocolVersion
	}
	if cfg.Heartbeat <= 0 {
		cfg.Heartbeat = 2 * time.Second
	}

	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return fmt.Errorf("listen: %w", err)
	}
	mux := http.NewServeMux()
	mux.Handle(grpchealth.NewHandler(grpchealth.NewStaticChecker()))
	srv := server.NewHTTPServer(mux)
	srv.ErrorLog = server.NewErrorLog(log)
	serveErr := make(chan error, 1)
	go func() { serveErr <- srv.Serve(lis) }()
	defer func() {
		shutdownCtx, cancel := context.WithTimeout(context.WithoutCancel(ctx), time.Second)
		defer cancel()
		_ = srv.Shutdown(shutdownCtx)
	}()

	addr := lis.Addr().String()
	log.Info().Str("addr", addr).Msg("vm server listening")
	attachErr := make(chan error, 1)
	if cfg.KeepAttached {
		a := &client.Attacher{ProtocolVersion: cfg.ProtocolVersion, VMAddr: addr, Refresh: cfg.AttachRefresh, OnHandshake: func(err error) {
			if err != nil {
				log.Warn().Err(err).Msg("attach failed; retrying")
				return
			}
			log.Debug().Msg("attached")
		}}
		go func() { attachErr <- a.Run(ctx) }()
	} else if err := client.Handshake(ctx, cfg.ProtocolVersion, addr); err != nil {
		if ctx.Err() != nil {
			// Asked to stop while the handshake was in flight: that is a
			// clean shutdown, not a failure.
			log.Info().Msg("stopped during handshake")
			return nil
		}
		return fmt.Errorf("handshake: %w", err)
	}
	if !cfg.KeepAttached {
		log.Info().Uint32("protocol_version", cfg.ProtocolVersion).Msg("handshake complete")
	}

	ticker := time.NewTicker(cfg.Heartbeat)
	defer ticker.Stop()
	for beat := 1; ; beat++ {
		select {
		case <-ctx.Done():
			log.Info().Msg("shutting down")
			return nil
		case err := <-serveErr:
			if errors.Is(err, http.ErrServerClosed) {
				return nil
			}
			return fmt.Errorf("serve: %w", err)
		case err := <-attachErr:
			if ctx.Err() != nil {
				return nil
			}
			return fmt.Errorf("attach: %w", err)
		case <-ticker.C:
			log.Info().Int("beat", beat).Msg("heartbeat")
		}
	}
}
