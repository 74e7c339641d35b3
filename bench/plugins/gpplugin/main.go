// Command gpplugin is the benchmark's hashicorp/go-plugin plugin: a gRPC
// plugin served by plugin.Serve, with nothing registered but go-plugin's own
// health, controller and broker services.
//
// Usage: gpplugin [MODE]
//
//	(none)       serve
//	exit         exit 0 at once (the fork/exec/wait floor of this binary)
//	exit-early   print "exit-at <unix-nanos>" on stderr and exit 3 before the handshake
//	flood BYTES LINELEN  serve, and write BYTES of numbered hclog JSON lines
//	             on stderr, as a plugin's hclog logger does (go-plugin's host
//	             parses and logs each)
package main

import (
	"bufio"
	"context"
	"fmt"
	"os"
	"strconv"
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
		case "flood":
			if len(os.Args) < 4 {
				fail("usage: gpplugin flood BYTES LINELEN")
			}
			total, err1 := strconv.ParseInt(os.Args[2], 10, 64)
			lineLen, err2 := strconv.Atoi(os.Args[3])
			if err1 != nil || err2 != nil || lineLen < 128 {
				fail("flood: bad BYTES or LINELEN")
			}
			// plugin.Serve points os.Stderr elsewhere; the plugin's own
			// hclog logger writes to the stderr it started with.
			go flood(os.Stderr, total, lineLen)
		}
	}
	plugin.Serve(&plugin.ServeConfig{
		HandshakeConfig: Handshake,
		Plugins:         plugin.PluginSet{"vm": VM{}},
		GRPCServer:      plugin.DefaultGRPCServer,
		Logger:          hclog.NewNullLogger(),
	})
}

func fail(msg string) {
	fmt.Fprintln(os.Stderr, "gpplugin:", msg)
	os.Exit(2)
}

// flood writes total bytes of lines of lineLen bytes (newline included),
// hclog JSON records whose message is "~flood~ 000000042 xxxx...", the
// shape of avaplugin's hclog-json flood.
func flood(f *os.File, total int64, lineLen int) {
	const prefix, suffix = `{"@level":"warn","@message":"`, `","@module":"vm","@timestamp":"2026-12-06T21:46:25.946000Z","height":42}`
	w := bufio.NewWriterSize(f, 64<<10)
	line := append(make([]byte, 0, lineLen), prefix...)
	at := len(line)
	line = append(line, "~flood~ 000000000 "...)
	for len(line) < lineLen-1-len(suffix) {
		line = append(line, 'x')
	}
	line = append(append(line, suffix...), '\n')
	for seq := range total / int64(lineLen) {
		v := seq
		for i := at + 16; i >= at+8; i-- {
			line[i] = byte('0' + v%10)
			v /= 10
		}
		if _, err := w.Write(line); err != nil {
			fail("write: " + err.Error())
		}
	}
	if err := w.Flush(); err != nil {
		fail("flush: " + err.Error())
	}
}
