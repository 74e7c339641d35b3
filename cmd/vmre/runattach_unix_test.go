//go:build unix

package main

import (
	"net"
	"strings"
	"testing"
	"time"

	"github.com/vmre/vmre"
	"github.com/vmre/vmre/client"
	"google.golang.org/grpc"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
)

// TestRunAttachProbesAttachedRuntimes: vmre run --attach probes what
// attaches (grpc.health.v1 on the announced address), so a plugin that
// dies is seen: past the threshold its runtime is unhealthy and lost.
func TestRunAttachProbesAttachedRuntimes(t *testing.T) {
	t.Parallel()
	p := startRun(t, "--attach", "--attach-health-interval", "100ms", "--attach-health-timeout", "5s", "--attach-health-threshold", "2")
	var engineAddr, secret string
	for engineAddr == "" {
		select {
		case line, ok := <-p.stdout:
			if !ok {
				t.Fatalf("vmre run printed no attach environment; log:\n%s", p.log.String())
			}
			rest, found := strings.CutPrefix(strings.TrimSpace(line), "export ")
			if !found {
				continue
			}
			for _, kv := range strings.Fields(rest) {
				k, v, _ := strings.Cut(kv, "=")
				switch k {
				case vmre.EngineAddressKey:
					engineAddr = v
				case vmre.HandshakeTokenKey:
					secret = v
				}
			}
		case <-time.After(60 * time.Second): // a bound for a hung test
			t.Fatalf("vmre run printed no attach environment; log:\n%s", p.log.String())
		}
	}

	// The plugin started elsewhere: a real grpc-go VM server serving
	// grpc.health.v1.
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := grpc.NewServer()
	healthpb.RegisterHealthServer(srv, health.NewServer())
	go func() { _ = srv.Serve(lis) }()
	defer srv.Stop()
	vmAddr := lis.Addr().String()
	c := client.New(engineAddr, client.WithToken(secret))
	defer c.Close()
	if err := c.Initialize(t.Context(), vmre.ProtocolVersion, vmAddr); err != nil {
		t.Fatal(err)
	}
	p.waitFor(t, "runtime attached", "")

	srv.Stop() // the plugin dies
	for {
		e := p.waitFor(t, "runtime unhealthy", "")
		if e.Addr == vmAddr {
			if !strings.Contains(e.raw, "2 times in a row") {
				t.Errorf("unhealthy entry does not give the threshold: %s", e.raw)
			}
			break
		}
	}
}
