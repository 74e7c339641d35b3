package main

import (
	"context"
	"io"
	"os/exec"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/hashicorp/go-plugin"
	"google.golang.org/grpc"
)

var gpHandshake = plugin.HandshakeConfig{
	ProtocolVersion:  1,
	MagicCookieKey:   "VMRE_BENCH_PLUGIN",
	MagicCookieValue: "bench",
}

type gpVM struct{ plugin.NetRPCUnsupportedPlugin }

func (gpVM) GRPCServer(*plugin.GRPCBroker, *grpc.Server) error { return nil }
func (gpVM) GRPCClient(_ context.Context, _ *plugin.GRPCBroker, c *grpc.ClientConn) (any, error) {
	return c, nil
}

// gpEngine launches the go-plugin plugin with hashicorp/go-plugin v1.7.0:
// launch is NewClient + Client() (start, read the handshake line, dial
// gRPC); stop is Kill (gRPC controller shutdown, wait, kill after 2 s).
type gpEngine struct {
	path    string
	timeout time.Duration
}

func (e *gpEngine) launch(ctx context.Context, args ...string) (*plugin.Client, error) {
	return e.launchWith(ctx, nil, args...)
}

// launchWith is launch with the plugin's stderr copied to stderr (nil:
// go-plugin's default, its logger).
func (e *gpEngine) launchWith(_ context.Context, stderr io.Writer, args ...string) (*plugin.Client, error) {
	c := plugin.NewClient(&plugin.ClientConfig{
		HandshakeConfig:  gpHandshake,
		Plugins:          plugin.PluginSet{"vm": gpVM{}},
		Cmd:              exec.Command(e.path, args...),
		Stderr:           stderr,
		AllowedProtocols: []plugin.Protocol{plugin.ProtocolGRPC},
		Logger:           hclog.NewNullLogger(),
		StartTimeout:     e.timeout,
	})
	if _, err := c.Client(); err != nil {
		c.Kill()
		return nil, err
	}
	return c, nil
}
