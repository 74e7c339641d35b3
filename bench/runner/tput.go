package main

import (
	"context"
	"fmt"
	"math"
	"net/http"
	"sync"
	"sync/atomic"
	"time"

	"connectrpc.com/connect"
	avapb "github.com/ava-labs/avalanchego/proto/pb/vm/runtime"
	handshakev1 "github.com/vmre/vmre/gen/vmre/handshake/v1"
	"github.com/vmre/vmre/server"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/protobuf/types/known/emptypb"
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
	gAddr, stopG, err := serveGRPCGo()
	if err != nil {
		return err
	}
	defer stopG()
	// vmre servers: server.NewHandler with its defaults, and with
	// compression off (what subprocess.Bootstrap's handshake server uses).
	vAddr, stopV, err := serveVmre(false)
	if err != nil {
		return err
	}
	defer stopV()
	vAddrNoGzip, stopVNoGzip, err := serveVmre(false, server.WithHandlerOptions(connect.WithCompressMinBytes(math.MaxInt32)))
	if err != nil {
		return err
	}
	defer stopVNoGzip()

	dial := func(addr string) (*grpc.ClientConn, error) {
		return grpc.NewClient("passthrough:///"+addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	}
	gconnG, err := dial(gAddr)
	if err != nil {
		return err
	}
	defer gconnG.Close()
	gconnV, err := dial(vAddr)
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
	connectCaller := func(addr string, opts ...connect.ClientOption) caller {
		c := connect.NewClient[handshakev1.InitializeRequest, emptypb.Empty](h1, "http://"+addr+server.InitializeProcedure, opts...)
		req := &handshakev1.InitializeRequest{ProtocolVersion: avaProtocolVersion, Addr: "127.0.0.1:9651"}
		return func(ctx context.Context) error {
			_, err := c.CallUnary(ctx, connect.NewRequest(req))
			return err
		}
	}

	type target struct {
		row  *row
		col  string
		c    caller
		lat  *row
		conc int
	}
	conc := e.o.tputConc
	tputRow := func(metric string) *row {
		r := newRow(metric, "calls/s")
		r.higherBetter = true
		return r
	}
	grpcRow := tputRow(fmt.Sprintf("Initialize throughput, gRPC h2c, grpc-go client, %d callers on 1 connection (ava column: plain grpc-go server)", conc))
	grpcLat := newRow("  per-call latency, gRPC, same run", "µs")
	grpc1Lat := newRow("Initialize latency, gRPC h2c, 1 caller (ava column: plain grpc-go server)", "µs")
	jsonRow := tputRow(fmt.Sprintf("Initialize throughput, Connect JSON over HTTP/1.1, connect-go client, %d callers", conc))
	jsonLat := newRow("  per-call latency, Connect JSON, same run", "µs")
	jsonRowNZ := tputRow("  the same, vmre server with response compression off")
	jsonLatNZ := newRow("  per-call latency, Connect JSON, compression off", "µs")
	webRow := tputRow(fmt.Sprintf("Initialize throughput, gRPC-Web over HTTP/1.1, connect-go client, %d callers", conc))
	webLat := newRow("  per-call latency, gRPC-Web, same run", "µs")
	webRowNZ := tputRow("  the same, vmre server with response compression off")
	webLatNZ := newRow("  per-call latency, gRPC-Web, compression off", "µs")
	one := newRow("", "") // discarded throughput of the 1-caller runs
	targets := []target{
		{grpcRow, colAva, grpcCaller(gconnG), grpcLat, conc},
		{grpcRow, colVmre, grpcCaller(gconnV), grpcLat, conc},
		{one, colAva, grpcCaller(gconnG), grpc1Lat, 1},
		{one, colVmre, grpcCaller(gconnV), grpc1Lat, 1},
		{jsonRow, colVmre, connectCaller(vAddr, connect.WithProtoJSON()), jsonLat, conc},
		{jsonRowNZ, colVmre, connectCaller(vAddrNoGzip, connect.WithProtoJSON()), jsonLatNZ, conc},
		{webRow, colVmre, connectCaller(vAddr, connect.WithGRPCWeb()), webLat, conc},
		{webRowNZ, colVmre, connectCaller(vAddrNoGzip, connect.WithGRPCWeb()), webLatNZ, conc},
	}
	// Warm up every path (connections, pools).
	for _, t := range targets {
		if _, _, err := hammer(ctx, t.c, t.conc, 200*time.Millisecond); err != nil {
			return fmt.Errorf("%s %s: %w", t.row.metric, t.col, err)
		}
	}
	for i := range e.o.tputRounds {
		fs := make([]func() error, len(targets))
		for k, t := range targets {
			fs[k] = func() error {
				n, lat, err := hammer(ctx, t.c, t.conc, e.o.tputDur)
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
	grpc1Lat.check("(informational) vmre p50 <= grpc-go p50", grpc1Lat.p50(colVmre) <= grpc1Lat.p50(colAva))
	e.rows = append(e.rows, grpcRow, grpcLat, grpc1Lat, jsonRow, jsonLat, jsonRowNZ, jsonLatNZ, webRow, webLat, webRowNZ, webLatNZ)
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
