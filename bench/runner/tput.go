package main

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"sync"
	"sync/atomic"
	"time"

	"connectrpc.com/connect"
	avapb "github.com/ava-labs/avalanchego/proto/pb/vm/runtime"
	"github.com/ava-labs/avalanchego/vms/rpcchainvm/grpcutils"
	"github.com/ava-labs/avalanchego/vms/rpcchainvm/gruntime"
	runtimepb "github.com/vmre/vmre/gen/vm/runtime"
	"github.com/vmre/vmre/gen/vm/runtime/runtimepbconnect"
	"github.com/vmre/vmre/server"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
)

// acceptAll accepts every handshake, for both servers.
type acceptAll struct{}

func (acceptAll) Initialize(context.Context, uint32, string) error { return nil }

type acceptAllAva struct{}

func (acceptAllAva) Initialize(context.Context, uint, string) error { return nil }

// caller makes one Initialize call.
type caller func(ctx context.Context) error

// benchThroughput measures Initialize calls per second and per-call latency
// with tputConc concurrent callers: against avalanchego's handshake server
// (grpc-go: grpcutils.NewServer + gruntime.NewServer, the "plain grpc-go
// server") with a grpc-go client, and against vmre's handler
// (server.NewHandler on server.NewHTTPServer) with the same grpc-go client
// over h2c, with a Connect JSON client and with a gRPC-Web client over
// HTTP/1.1. Both servers accept every call; rounds interleave.
func benchThroughput(ctx context.Context, e *env) error {
	// grpc-go server.
	gl, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return err
	}
	gs := grpcutils.NewServer()
	avapb.RegisterRuntimeServer(gs, gruntime.NewServer(acceptAllAva{}))
	go func() { _ = gs.Serve(gl) }()
	defer gs.Stop()

	// vmre server.
	vl, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return err
	}
	path, h := server.NewHandler(acceptAll{})
	mux := http.NewServeMux()
	mux.Handle(path, h)
	vs := server.NewHTTPServer(mux)
	go func() { _ = vs.Serve(vl) }()
	defer vs.Close()

	dial := func(addr string) (*grpc.ClientConn, error) {
		return grpc.NewClient("passthrough:///"+addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	}
	gconnG, err := dial(gl.Addr().String())
	if err != nil {
		return err
	}
	defer gconnG.Close()
	gconnV, err := dial(vl.Addr().String())
	if err != nil {
		return err
	}
	defer gconnV.Close()
	grpcCaller := func(conn *grpc.ClientConn) caller {
		c := avapb.NewRuntimeClient(conn)
		req := &avapb.InitializeRequest{ProtocolVersion: avaProtocolVersion, Addr: "127.0.0.1:9651"}
		return func(ctx context.Context) error {
			_, err := c.Initialize(ctx, req)
			return err
		}
	}
	h1 := &http.Client{Transport: &http.Transport{
		MaxIdleConns:        e.o.tputConc * 2,
		MaxIdleConnsPerHost: e.o.tputConc * 2,
		IdleConnTimeout:     time.Minute,
	}}
	connectCaller := func(opts ...connect.ClientOption) caller {
		c := runtimepbconnect.NewRuntimeClient(h1, "http://"+vl.Addr().String(), opts...)
		req := &runtimepb.InitializeRequest{ProtocolVersion: avaProtocolVersion, Addr: "127.0.0.1:9651"}
		return func(ctx context.Context) error {
			_, err := c.Initialize(ctx, req)
			return err
		}
	}

	type target struct {
		row *row
		col string
		c   caller
		lat *row
	}
	grpcRow := newRow(fmt.Sprintf("Initialize throughput, gRPC h2c, grpc-go client, %d callers (ava column: plain grpc-go server)", e.o.tputConc), "calls/s")
	grpcRow.higherBetter = true
	grpcLat := newRow("  per-call latency, gRPC", "µs")
	jsonRow := newRow("Initialize throughput, Connect JSON over HTTP/1.1, connect-go client", "calls/s")
	jsonRow.higherBetter = true
	jsonLat := newRow("  per-call latency, Connect JSON", "µs")
	webRow := newRow("Initialize throughput, gRPC-Web over HTTP/1.1, connect-go client", "calls/s")
	webRow.higherBetter = true
	webLat := newRow("  per-call latency, gRPC-Web", "µs")
	targets := []target{
		{grpcRow, colAva, grpcCaller(gconnG), grpcLat},
		{grpcRow, colVmre, grpcCaller(gconnV), grpcLat},
		{jsonRow, colVmre, connectCaller(connect.WithProtoJSON()), jsonLat},
		{webRow, colVmre, connectCaller(connect.WithGRPCWeb()), webLat},
	}
	// Warm up every path (connections, pools).
	for _, t := range targets {
		if _, _, err := hammer(ctx, t.c, e.o.tputConc, 200*time.Millisecond); err != nil {
			return fmt.Errorf("%s %s: %w", t.row.metric, t.col, err)
		}
	}
	for i := range e.o.tputRounds {
		fs := make([]func() error, len(targets))
		for k, t := range targets {
			fs[k] = func() error {
				n, lat, err := hammer(ctx, t.c, e.o.tputConc, e.o.tputDur)
				if err != nil {
					return fmt.Errorf("%s %s: %w", t.row.metric, t.col, err)
				}
				t.row.add(t.col, float64(n)/e.o.tputDur.Seconds())
				t.lat.vals[t.col] = append(t.lat.vals[t.col], lat...)
				return nil
			}
		}
		if err := rotate(i, fs...); err != nil {
			return err
		}
		e.progress("tput: round %d/%d", i+1, e.o.tputRounds)
	}
	grpcRow.check("vmre/grpc-go >= 1.0", grpcRow.ratio(colAva) >= 1.0)
	e.rows = append(e.rows, grpcRow, grpcLat, jsonRow, jsonLat, webRow, webLat)
	return nil
}

// hammer calls c from conc goroutines for d and returns the number of
// calls completed and every call's latency in µs.
func hammer(ctx context.Context, c caller, conc int, d time.Duration) (int64, []float64, error) {
	var n atomic.Int64
	var stop atomic.Bool
	var mu sync.Mutex
	var all []float64
	var first error
	var wg sync.WaitGroup
	for range conc {
		wg.Go(func() {
			lat := make([]float64, 0, 4096)
			for !stop.Load() {
				t0 := time.Now()
				if err := c(ctx); err != nil {
					mu.Lock()
					if first == nil {
						first = err
					}
					mu.Unlock()
					return
				}
				lat = append(lat, us(time.Since(t0)))
				n.Add(1)
			}
			mu.Lock()
			all = append(all, lat...)
			mu.Unlock()
		})
	}
	time.Sleep(d)
	stop.Store(true)
	wg.Wait()
	return n.Load(), all, first
}
