package main

import (
	"bufio"
	"context"
	"fmt"
	"math"
	"net"
	"net/http"
	"os"
	"strconv"
	"time"

	"connectrpc.com/connect"
	avapb "github.com/ava-labs/avalanchego/proto/pb/vm/runtime"
	"github.com/ava-labs/avalanchego/vms/rpcchainvm/grpcutils"
	"github.com/ava-labs/avalanchego/vms/rpcchainvm/gruntime"
	"github.com/vmre/vmre/server"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
)

type acceptAll struct{}

func (acceptAll) Initialize(context.Context, uint32, string) error { return nil }

type acceptAllAva struct{}

func (acceptAllAva) Initialize(context.Context, uint, string) error { return nil }

func main() {
	switch os.Args[1] {
	case "srv":
		l, _ := net.Listen("tcp", "127.0.0.1:0")
		fmt.Println(l.Addr().String())
		if os.Args[2] == "grpc" {
			gs := grpcutils.NewServer()
			avapb.RegisterRuntimeServer(gs, gruntime.NewServer(acceptAllAva{}))
			gs.Serve(l)
		} else {
			path, h := server.NewHandler(acceptAll{}, server.WithHandlerOptions(connect.WithCompressMinBytes(math.MaxInt32)))
			mux := http.NewServeMux()
			mux.Handle(path, h)
			if os.Args[2] == "vmre-bufread" {
				l = bufListener{l}
			}
			server.NewHTTPServer(mux).Serve(l)
		}
	case "cli":
		n, _ := strconv.Atoi(os.Args[3])
		conn, _ := grpc.NewClient("passthrough:///"+os.Args[2], grpc.WithTransportCredentials(insecure.NewCredentials()))
		c := avapb.NewRuntimeClient(conn)
		req := &avapb.InitializeRequest{ProtocolVersion: 46, Addr: "127.0.0.1:9651"}
		c.Initialize(context.Background(), req)
		t0 := time.Now()
		for range n {
			if _, err := c.Initialize(context.Background(), req); err != nil {
				panic(err)
			}
		}
		fmt.Println("per call", time.Since(t0)/time.Duration(n))
	}
}

type bufListener struct{ net.Listener }

func (l bufListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	return &bufConn{Conn: c, r: bufio.NewReaderSize(c, 32<<10)}, nil
}

type bufConn struct {
	net.Conn
	r *bufio.Reader
}

func (c *bufConn) Read(p []byte) (int, error) { return c.r.Read(p) }
