package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"sync"
	"sync/atomic"
	"testing/fstest"
	"time"

	"connectrpc.com/connect"
	"github.com/vmre/vmre/api"
	"github.com/vmre/vmre/engine"
	vmrev1 "github.com/vmre/vmre/gen/vmre/v1"
	"github.com/vmre/vmre/gen/vmre/v1/vmrev1connect"
	"github.com/vmre/vmre/server"
	"github.com/vmre/vmre/subprocess"
)

// benchWatch measures the management API's watch stream: watchers
// WatchRuntimes streams on the API handler (api.New, served by
// server.NewHTTPServer as `vmre run` does), each over its own HTTP/1.1
// connection with gRPC-Web (what the dashboard speaks) or over h2c with
// gRPC; then real plugins are launched and stopped through the engine
// (NewSubprocessLauncher), and every delivered change is timed from the
// engine's clock when it made the change (server_time) to its arrival.
func benchWatch(ctx context.Context, e *env) error {
	var variants []bool // offer gzip?
	switch e.o.watchGzip {
	case "both":
		variants = []bool{true, false}
	case "yes":
		variants = []bool{true}
	case "no":
		variants = []bool{false}
	default:
		return fmt.Errorf("-watch-gzip %q: want both, yes or no", e.o.watchGzip)
	}
	for _, gzip := range variants {
		if err := benchWatchOnce(ctx, e, gzip); err != nil {
			return err
		}
	}
	return nil
}

func benchWatchOnce(ctx context.Context, e *env, offerGzip bool) error {
	eng, err := engine.New(engine.Config{
		Launcher: engine.NewSubprocessLauncher(subprocess.Config{
			Log:              vmreLogger(io.Discard),
			AcceptedVersions: []uint32{avaProtocolVersion},
			HandshakeTimeout: 10 * time.Second,
		}, nil),
		AcceptedVersions: []uint32{avaProtocolVersion},
	})
	if err != nil {
		return err
	}
	defer eng.Close(context.Background())
	h, err := api.New(eng, api.Config{Token: "bench-token-0123456789abcdef0123456789", Dashboard: fstest.MapFS{}})
	if err != nil {
		return err
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return err
	}
	srv := server.NewHTTPServer(h)
	go func() { _ = srv.Serve(l) }()
	defer srv.Close()
	base := "http://" + l.Addr().String()

	var client *http.Client
	var opts []connect.ClientOption
	switch e.o.watchProto {
	case "grpcweb":
		client = &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: e.o.watchers, MaxConnsPerHost: 0}}
		opts = append(opts, connect.WithGRPCWeb())
	case "grpc":
		var p http.Protocols
		p.SetUnencryptedHTTP2(true)
		client = &http.Client{Transport: &http.Transport{Protocols: &p}}
		opts = append(opts, connect.WithGRPC())
	default:
		return fmt.Errorf("-watch-proto %q: want grpcweb or grpc", e.o.watchProto)
	}
	if !offerGzip {
		// The watchers do not offer gzip, so the server sends plain
		// messages (what a server-side compression threshold would do).
		opts = append(opts, connect.WithAcceptCompression("gzip", nil, nil))
	}
	rpc := vmrev1connect.NewRuntimeServiceClient(client, base, opts...)

	wctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var (
		mu        sync.Mutex
		lat       sample
		resyncs   atomic.Int64
		ready     sync.WaitGroup
		finished  sync.WaitGroup
		firstErr  error
		delivered atomic.Int64
	)
	want := int64(e.o.watchers) * int64(e.o.watchEvents)
	allIn := make(chan struct{})
	ready.Add(e.o.watchers)
	for range e.o.watchers {
		finished.Go(func() {
			stream, err := rpc.WatchRuntimes(wctx, &vmrev1.WatchRuntimesRequest{})
			if err != nil {
				mu.Lock()
				firstErr = errors.Join(firstErr, err)
				mu.Unlock()
				ready.Done()
				return
			}
			defer stream.Close()
			first := true
			local := make(sample, 0, e.o.watchEvents)
			for stream.Receive() {
				now := time.Now()
				msg := stream.Msg()
				if first {
					first = false
					ready.Done()
					continue
				}
				if msg.GetSnapshot() != nil {
					resyncs.Add(1)
					continue
				}
				local = append(local, ms(now.Sub(msg.GetServerTime().AsTime())))
				if delivered.Add(1) == want {
					close(allIn)
				}
			}
			mu.Lock()
			lat = append(lat, local...)
			mu.Unlock()
		})
	}
	ready.Wait()
	if firstErr != nil {
		return fmt.Errorf("watch: %w", firstErr)
	}
	e.progress("watch: %d watchers subscribed", e.o.watchers)

	// Each launch and stop makes 4 changes: starting, running, stopping,
	// exited.
	cycles := (e.o.watchEvents + 3) / 4
	want = int64(cycles * 4 * e.o.watchers)
	spec := engine.Spec{Name: "bench", Path: e.ava, Args: []string{"serve"}}
	for range cycles {
		rt, err := eng.Launch(ctx, spec)
		if err != nil {
			return fmt.Errorf("engine launch: %w", err)
		}
		time.Sleep(50 * time.Millisecond)
		if _, err := eng.Stop(ctx, rt.ID); err != nil {
			return fmt.Errorf("engine stop: %w", err)
		}
		time.Sleep(50 * time.Millisecond)
	}
	select {
	case <-allIn:
	case <-time.After(10 * time.Second):
	}
	cancel()
	finished.Wait()

	gz := "gzip offered, as connect-go clients do by default"
	if !offerGzip {
		gz = "gzip not offered"
	}
	r := newRow(fmt.Sprintf("watch stream, %d watchers (%s, %s), state change -> delivered (%d changes each)", e.o.watchers, e.o.watchProto, gz, cycles*4), "ms")
	r.vals[colVmre] = lat
	missed := want - int64(len(lat))
	r.check(fmt.Sprintf("p99 <= 50 ms; %d of %d deliveries missing, %d resyncs", missed, want, resyncs.Load()),
		r.p99(colVmre) <= 50 && missed == 0)
	e.rows = append(e.rows, r)
	return nil
}
