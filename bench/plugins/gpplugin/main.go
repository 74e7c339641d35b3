// Command gpplugin is the benchmark's hashicorp/go-plugin plugin: a gRPC
// plugin served by plugin.Serve, with nothing registered but go-plugin's own
// health, controller and broker services.
//
// Usage: gpplugin [exit]   ("exit": exit 0 at once, the floor for this binary)
package main

import (
	"context"
	"os"

	"github.com/hashicorp/go-hclog"
	"github.com/hashicorp/go-plugin"
	"google.golang.org/grpc"
)

// Handshake must match the host's.
var Handshake = plugin.HandshakeConfig{
	ProtocolVersion:  1,
	MagicCookieKey:   "VMRE_BENCH_PLUGIN",
	MagicCookieValue: "bench",
}

// VM is an empty gRPC plugin.
type VM struct{ plugin.NetRPCUnsupportedPlugin }

// GRPCServer registers nothing.
func (VM) GRPCServer(*plugin.GRPCBroker, *grpc.Server) error { return nil }

// GRPCClient returns the connection itself.
func (VM) GRPCClient(_ context.Context, _ *plugin.GRPCBroker, c *grpc.ClientConn) (any, error) {
	return c, nil
}

func main() {
	if len(os.Args) > 1 && os.Args[1] == "exit" {
		os.Exit(0)
	}
	plugin.Serve(&plugin.ServeConfig{
		HandshakeConfig: Handshake,
		Plugins:         plugin.PluginSet{"vm": VM{}},
		GRPCServer:      plugin.DefaultGRPCServer,
		Logger:          hclog.NewNullLogger(),
	})
}
