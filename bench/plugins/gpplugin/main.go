// Command gpplugin is the benchmark's hashicorp/go-plugin plugin: a gRPC
// plugin served by plugin.Serve, with nothing registered but go-plugin's own
// health, controller and broker services.
//
// Usage: gpplugin [MODE]
//
//	(none)       serve
//	exit         exit 0 at once (the fork/exec/wait floor of this binary)
//	exit-early   print "exit-at <unix-nanos>" on stderr and exit 3 before the handshake
package main

import (
	"context"
	"fmt"
	"os"
	"time"

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
	if len(os.Args) > 1 {
		switch os.Args[1] {
		case "exit":
			os.Exit(0)
		case "exit-early":
			fmt.Fprintf(os.Stderr, "exit-at %d\n", time.Now().UnixNano())
			os.Exit(3)
		}
	}
	plugin.Serve(&plugin.ServeConfig{
		HandshakeConfig: Handshake,
		Plugins:         plugin.PluginSet{"vm": VM{}},
		GRPCServer:      plugin.DefaultGRPCServer,
		Logger:          hclog.NewNullLogger(),
	})
}
