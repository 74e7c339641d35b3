package server_test

import (
	"net/http"
	"testing"

	"connectrpc.com/connect"
	handshakev1 "github.com/vmre/vmre/gen/vmre/handshake/v1"
	"github.com/vmre/vmre/server"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/protobuf/types/known/emptypb"
)

// BenchmarkInitialize measures one handshake round trip through the
// server's handler over a real loopback connection, with a no-op
// Initializer, for each kind of client a plugin uses. The connection is
// kept alive across iterations, so this is the cost of the RPC, not of
// dialing.
//
//   - connect-grpc-h2c: connect-go speaking gRPC over h2c (vmre's client).
//   - grpc-go: a grpc-go client, as avalanchego and luxd plugins use.
//   - connect-json-http1: Connect with JSON over HTTP/1.1, as curl sends.
func BenchmarkInitialize(b *testing.B) {
	engineAddr := startServer(b, nopInitializer{}, nil)
	req := &handshakev1.InitializeRequest{ProtocolVersion: engineVersion, Addr: "127.0.0.1:50001"}

	b.Run("connect-grpc-h2c", func(b *testing.B) {
		var protocols http.Protocols
		protocols.SetUnencryptedHTTP2(true)
		transport := &http.Transport{Protocols: &protocols}
		b.Cleanup(transport.CloseIdleConnections)
		rpc := newRuntimeClient(&http.Client{Transport: transport},
			"http://"+engineAddr, connect.WithGRPC())
		benchmarkCalls(b, func() error {
			_, err := rpc.Initialize(b.Context(), req)
			return err
		})
	})

	b.Run("grpc-go", func(b *testing.B) {
		conn, err := grpc.NewClient(engineAddr, grpc.WithTransportCredentials(insecure.NewCredentials()))
		if err != nil {
			b.Fatal(err)
		}
		b.Cleanup(func() { _ = conn.Close() })
		benchmarkCalls(b, func() error {
			return conn.Invoke(b.Context(), server.InitializeProcedure, req, &emptypb.Empty{})
		})
	})

	b.Run("connect-json-http1", func(b *testing.B) {
		transport := &http.Transport{}
		b.Cleanup(transport.CloseIdleConnections)
		rpc := newRuntimeClient(&http.Client{Transport: transport},
			"http://"+engineAddr, connect.WithProtoJSON())
		benchmarkCalls(b, func() error {
			_, err := rpc.Initialize(b.Context(), req)
			return err
		})
	})
}

func benchmarkCalls(b *testing.B, call func() error) {
	b.Helper()
	if err := call(); err != nil { // warm up the connection
		b.Fatalf("Initialize: %v", err)
	}
	b.ReportAllocs()
	for b.Loop() {
		if err := call(); err != nil {
			b.Fatalf("Initialize: %v", err)
		}
	}
}
