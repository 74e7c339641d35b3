package server_test

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"

	"github.com/vmre/vmre"
	"github.com/vmre/vmre/server"
)

// acceptVersion42 is an Initializer that accepts plugins speaking protocol
// version 42.
type acceptVersion42 struct{}

func (acceptVersion42) Initialize(_ context.Context, protocolVersion uint32, vmAddr string) error {
	if protocolVersion != 42 {
		return &vmre.VersionMismatchError{Accepted: []uint32{42}, Got: protocolVersion}
	}
	fmt.Println("plugin handshook from", vmAddr)
	return nil
}

// ExampleNewHandler serves the handshake on a loopback port and calls it
// the way curl does, once with the engine's version and once with another.
func ExampleNewHandler() {
	path, handler := server.NewHandler(acceptVersion42{})
	mux := http.NewServeMux()
	mux.Handle(path, handler)

	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		fmt.Println(err)
		return
	}
	srv := server.NewHTTPServer(mux)
	go func() { _ = srv.Serve(ln) }()
	defer srv.Close()

	url := "http://" + ln.Addr().String() + "/vm.runtime.Runtime/Initialize"
	for _, body := range []string{
		`{"protocolVersion":42,"addr":"127.0.0.1:50001"}`,
		`{"protocolVersion":41,"addr":"127.0.0.1:50001"}`,
	} {
		resp, err := http.Post(url, "application/json", strings.NewReader(body))
		if err != nil {
			fmt.Println(err)
			return
		}
		answer, _ := io.ReadAll(resp.Body)
		_ = resp.Body.Close()
		fmt.Println(resp.StatusCode, string(answer))
	}
	// Output:
	// plugin handshook from 127.0.0.1:50001
	// 200 {}
	// 400 {"code":"failed_precondition","message":"protocol version mismatch engine: 42 vm: 41"}
}
