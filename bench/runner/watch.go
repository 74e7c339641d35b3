package main

import (
	"context"
	"fmt"
	"io"
	"net"
	"testing/fstest"
	"time"

	"github.com/vmre/vmre/api"
	"github.com/vmre/vmre/engine"
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
// The watchers run in a process of their own (this binary again, see
// watchClientMain), as browsers do, and in the engine's process, where
// their CPU and garbage are the server's too.
func benchWatch(ctx context.Context, e *env) error {
	grpcWebs, err := choice("watch-proto", e.o.watchProto, "grpcweb", "grpc")
	if err != nil {
		return err
	}
	gzips, err := choice("watch-gzip", e.o.watchGzip, "yes", "no") // offer gzip?
	if err != nil {
		return err
	}
	wheres, err := choice("watch-where", e.o.watchWhere, "process", "inline") // watchers apart?
	if err != nil {
		return err
	}
	for _, grpcWeb := range grpcWebs {
		proto := "grpc"
		if grpcWeb {
			proto = "grpcweb"
		}
		for _, apart := range wheres {
			for _, gzip := range gzips {
				if err := benchWatchOnce(ctx, e, proto, gzip, apart); err != nil {
					return err
				}
			}
		}
	}
	return nil
}

// choice reads a two-way flag whose value is yes, no or "both": the
// variants to run, true for yes.
func choice(flag, value, yes, no string) ([]bool, error) {
	switch value {
	case "both":
		return []bool{true, false}, nil
	case yes:
		return []bool{true}, nil
	case no:
		return []bool{false}, nil
	}
	return nil, fmt.Errorf("-%s %q: want both, %s or %s", flag, value, yes, no)
}

func benchWatchOnce(ctx context.Context, e *env, proto string, offerGzip, apart bool) error {
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
	// Every watcher is a stream; over h2c up to 250 share a connection.
	base, stopAPI, err := serveAPI(eng, api.Config{MaxStreams: e.o.watchers, MaxStreamsPerConn: e.o.watchers})
	if err != nil {
		return err
	}
	defer stopAPI()

	// Each launch and stop makes 4 changes: starting, running, stopping,
	// exited.
	cycles := (e.o.watchEvents + 3) / 4
	want := int64(cycles * 4 * e.o.watchers)

	var (
		inline *watchers
		proc   *watcherProcess
	)
	if apart {
		proc, err = startWatcherProcess(ctx, base, e.o.watchers, want, proto, offerGzip)
	} else {
		inline, err = startWatchers(ctx, base, e.o.watchers, want, proto, offerGzip)
	}
	if err != nil {
		return fmt.Errorf("watch: %w", err)
	}
	e.progress("watch: %d watchers subscribed", e.o.watchers)

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
	var (
		lat     sample
		resyncs int64
	)
	if apart {
		if lat, resyncs, err = proc.finish(10 * time.Second); err != nil {
			return fmt.Errorf("watcher process: %w", err)
		}
	} else {
		select {
		case <-inline.allIn:
		case <-time.After(10 * time.Second):
		}
		inline.stop()
		lat, resyncs = inline.lat, inline.resyncs.Load()
	}

	gz := "gzip offered, as connect-go clients do by default"
	if !offerGzip {
		gz = "gzip not offered"
	}
	where := "in a process of their own, as browsers are"
	if proto == "grpc" {
		where = "in a process of their own, as Node.js clients are"
	}
	if !apart {
		where = "in the engine's process"
	}
	r := newRow(fmt.Sprintf("watch stream, %d watchers %s (%s, %s), state change -> delivered (%d changes each)", e.o.watchers, where, proto, gz, cycles*4), "ms")
	r.vals[colVmre] = lat
	missed := want - int64(len(lat))
	r.check(fmt.Sprintf("p99 <= 50 ms; %d of %d deliveries missing, %d resyncs", missed, want, resyncs),
		r.p99(colVmre) <= 50 && missed == 0)
	e.rows = append(e.rows, r)
	return nil
}

// serveAPI serves eng's API with cfg, plus a token and an empty dashboard,
// on a port of 127.0.0.1 through the server `vmre run` uses. It returns
// the port's base URL and a function that closes the server.
func serveAPI(eng *engine.Engine, cfg api.Config) (string, func(), error) {
	cfg.Token = "bench-token-0123456789abcdef0123456789"
	cfg.Dashboard = fstest.MapFS{}
	h, err := api.New(eng, cfg)
	if err != nil {
		return "", nil, err
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", nil, err
	}
	srv := server.NewHTTPServer(h)
	go func() { _ = srv.Serve(l) }()
	return "http://" + l.Addr().String(), func() { _ = srv.Close() }, nil
}
