package main

import (
	"net"
	"testing"

	"google.golang.org/grpc"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
)

// The doctor's health probe against real grpc-go servers, as plugins built
// on avalanchego's rpcchainvm serve it: each serving status by name, and a
// server without the health service reported as optional.
func TestProbeHealth(t *testing.T) {
	t.Parallel()
	for _, tt := range []struct {
		name   string
		status healthpb.HealthCheckResponse_ServingStatus
		serve  bool
		want   string
	}{
		{name: "serving", status: healthpb.HealthCheckResponse_SERVING, serve: true, want: "SERVING"},
		{name: "not serving", status: healthpb.HealthCheckResponse_NOT_SERVING, serve: true, want: "NOT_SERVING"},
		{name: "unknown", status: healthpb.HealthCheckResponse_UNKNOWN, serve: true, want: "UNKNOWN"},
		{name: "not served", serve: false, want: "not served (optional)"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			ln, err := net.Listen("tcp", "127.0.0.1:0")
			if err != nil {
				t.Fatal(err)
			}
			srv := grpc.NewServer()
			if tt.serve {
				h := health.NewServer()
				h.SetServingStatus("", tt.status)
				healthpb.RegisterHealthServer(srv, h)
			}
			served := make(chan error, 1)
			go func() { served <- srv.Serve(ln) }()
			t.Cleanup(func() {
				srv.Stop()
				if err := <-served; err != nil {
					t.Error(err)
				}
			})
			if got, refused := probeHealth(t.Context(), ln.Addr().String()); got != tt.want || refused {
				t.Errorf("probeHealth = %q, %v; want %q, false", got, refused, tt.want)
			}
		})
	}
}

// An address nothing listens on is reported as refusing connections.
func TestProbeHealthRefused(t *testing.T) {
	t.Parallel()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	if got, refused := probeHealth(t.Context(), addr); got != "error: connection refused" || !refused {
		t.Errorf("probeHealth = %q, %v; want connection refused, true", got, refused)
	}
}
