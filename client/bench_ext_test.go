package client_test

import (
	"context"
	"testing"

	"github.com/vmre/vmre/client"
)

type acceptAll struct{}

func (acceptAll) Initialize(context.Context, uint32, string) error { return nil }

// BenchmarkInitialize measures a handshake through vmre's client against
// vmre's server on loopback, with a no-op Initializer.
//
//   - grpc, grpcweb, connect: one Client reused, so the connection stays
//     open; the cost of the RPC in each protocol.
//   - plugin: New, Initialize and Close on every iteration, as a plugin
//     does once at start-up; includes dialing the engine.
func BenchmarkInitialize(b *testing.B) {
	engineAddr := startVMREServer(b, acceptAll{}, nil)
	for _, p := range []client.Protocol{client.ProtocolGRPC, client.ProtocolGRPCWeb, client.ProtocolConnect} {
		b.Run(p.String(), func(b *testing.B) {
			c := client.New(engineAddr, client.WithProtocol(p))
			b.Cleanup(c.Close)
			if err := c.Initialize(b.Context(), engineVersion, "127.0.0.1:50001"); err != nil {
				b.Fatalf("Initialize: %v", err)
			}
			b.ReportAllocs()
			for b.Loop() {
				if err := c.Initialize(b.Context(), engineVersion, "127.0.0.1:50001"); err != nil {
					b.Fatalf("Initialize: %v", err)
				}
			}
		})
	}
	b.Run("plugin", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			c := client.New(engineAddr)
			err := c.Initialize(b.Context(), engineVersion, "127.0.0.1:50001")
			c.Close()
			if err != nil {
				b.Fatalf("Initialize: %v", err)
			}
		}
	})
}
