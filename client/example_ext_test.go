package client_test

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"

	"github.com/vmre/vmre"
	"github.com/vmre/vmre/client"
	"github.com/vmre/vmre/server"
)

// engine42 is an engine that accepts plugins speaking protocol version 42.
type engine42 struct{}

func (engine42) Initialize(_ context.Context, protocolVersion uint32, vmAddr string) error {
	if protocolVersion != 42 {
		return &vmre.VersionMismatchError{Accepted: []uint32{42}, Got: protocolVersion}
	}
	fmt.Println("engine: plugin serves at", vmAddr)
	return nil
}

// ExampleClient_Initialize starts an engine's handshake server on a
// loopback port and handshakes with it as a plugin would, first with the
// engine's protocol version, then with another one.
func ExampleClient_Initialize() {
	// The engine side: vmre's handshake server.
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		fmt.Println(err)
		return
	}
	mux := http.NewServeMux()
	mux.Handle(server.NewHandler(engine42{}))
	srv := server.NewHTTPServer(mux)
	go func() { _ = srv.Serve(ln) }()
	defer srv.Close()

	// The plugin side. A real plugin calls client.Handshake, which finds
	// the engine's address in its environment.
	c := client.New(ln.Addr().String())
	defer c.Close()
	ctx := context.Background()

	if err := c.Initialize(ctx, 42, "127.0.0.1:50001"); err != nil {
		fmt.Println(err)
		return
	}
	fmt.Println("plugin: handshake done")

	err = c.Initialize(ctx, 41, "127.0.0.1:50001")
	fmt.Println("plugin:", err)
	fmt.Println("mismatch:", errors.Is(err, vmre.ErrProtocolVersionMismatch))
	// Output:
	// engine: plugin serves at 127.0.0.1:50001
	// plugin: handshake done
	// plugin: handshake failed: protocol version mismatch engine: 42 vm: 41
	// mismatch: true
}
