package main

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"strconv"
	"strings"

	avapb "github.com/ava-labs/avalanchego/proto/pb/vm/runtime"
	"github.com/ava-labs/avalanchego/vms/rpcchainvm/grpcutils"
	"github.com/ava-labs/avalanchego/vms/rpcchainvm/gruntime"
	"github.com/vmre/vmre/server"
)

// serveGRPCGo serves avalanchego's own handshake server (grpcutils.NewServer
// + gruntime.NewServer, the "plain grpc-go server"), accepting every call.
func serveGRPCGo() (addr string, stop func(), err error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", nil, err
	}
	gs := grpcutils.NewServer()
	avapb.RegisterRuntimeServer(gs, gruntime.NewServer(acceptAllAva{}))
	go func() { _ = gs.Serve(l) }()
	return l.Addr().String(), gs.Stop, nil
}

// serveVmre serves vmre's handler (server.NewHandler on
// server.NewHTTPServer, as the engine does), accepting every call. With
// h2Only the server speaks cleartext HTTP/2 only, so it need not read a
// client's first bytes to tell HTTP/1.1 from HTTP/2.
func serveVmre(h2Only bool, opts ...server.Option) (addr string, stop func(), err error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", nil, err
	}
	path, h := server.NewHandler(acceptAll{}, opts...)
	mux := http.NewServeMux()
	mux.Handle(path, h)
	s := server.NewHTTPServer(mux)
	if h2Only {
		var p http.Protocols
		p.SetUnencryptedHTTP2(true)
		s.Protocols = &p
	}
	go func() { _ = s.Serve(l) }()
	return l.Addr().String(), func() { _ = s.Close() }, nil
}

// benchApart measures Initialize with the caller in a process of its own,
// as a plugin is: the benchmark plugin (a grpc-go client) in mode
// call-once, started afresh for every call (its first call on a new
// connection: what a launch pays), and in mode call-loop, making
// sequential calls for tputDur per round, with the server's CPU per call
// (this process's user+system time over the round: the caller is
// elsewhere). Servers: avalanchego's grpc-go handshake server, vmre's
// default one, and vmre's serving HTTP/2 only; runs interleave.
func benchApart(ctx context.Context, e *env) error {
	type target struct {
		col    string
		h2Only bool
		first  *row
		addr   string
	}
	first := newRow("first Initialize from a fresh process, on a new connection (grpc-go client in mode call-once; ava column: plain grpc-go server)", "µs")
	firstH2 := newRow("  the same, vmre's server serving cleartext HTTP/2 only (no HTTP/1.1 on its port)", "µs")
	seq := newRow(fmt.Sprintf("Initialize, 1 caller in another process, sequential calls for %s a round (ava column: plain grpc-go server)", e.o.tputDur), "calls/s")
	seq.higherBetter = true
	cpu := newRow("  server CPU per call, same rounds (user+sys of the serving process / calls)", "µs")

	targets := []*target{{col: colAva, first: first}, {col: colVmre, first: first}, {col: colVmre, h2Only: true, first: firstH2}}
	for _, t := range targets {
		var stop func()
		var err error
		if t.col == colAva {
			t.addr, stop, err = serveGRPCGo()
		} else {
			t.addr, stop, err = serveVmre(t.h2Only)
		}
		if err != nil {
			return err
		}
		defer stop()
	}
	call := func(addr string, args ...string) (string, error) {
		cmd := exec.CommandContext(ctx, e.ava, args...)
		cmd.Env = append(os.Environ(), "AVALANCHE_VM_RUNTIME_ENGINE_ADDR="+addr)
		out, err := cmd.Output()
		if err != nil {
			return "", fmt.Errorf("avaplugin %s against %s: %w", strings.Join(args, " "), addr, err)
		}
		return strings.TrimSpace(string(out)), nil
	}
	// field returns the number after prefix in the plugin's answer.
	field := func(out, prefix string) (float64, error) {
		v, ok := strings.CutPrefix(out, prefix+" ")
		if !ok {
			return 0, fmt.Errorf("avaplugin printed %q, want %q and a number", out, prefix)
		}
		return strconv.ParseFloat(v, 64)
	}

	for i := range warmups + e.o.runs {
		fs := make([]func() error, len(targets))
		for k, t := range targets {
			fs[k] = func() error {
				out, err := call(t.addr, "call-once")
				if err != nil {
					return err
				}
				ns, err := field(out, "call")
				if err != nil {
					return err
				}
				if i >= warmups {
					t.first.add(t.col, ns/1e3)
				}
				return nil
			}
		}
		if err := rotate(i, fs...); err != nil {
			return err
		}
	}
	e.progress("apart: %d fresh-process calls per server", e.o.runs)

	for i := range e.o.tputRounds {
		fs := make([]func() error, 2) // the default servers only
		for k, t := range targets[:2] {
			fs[k] = func() error {
				before, _ := cpuTimes()
				out, err := call(t.addr, "call-loop", e.o.tputDur.String())
				if err != nil {
					return err
				}
				after, _ := cpuTimes()
				n, err := field(out, "calls")
				if err != nil || n == 0 {
					return fmt.Errorf("call-loop: %q: %v", out, err)
				}
				seq.add(t.col, n/e.o.tputDur.Seconds())
				// The round's CPU includes the 2,000 warm-up calls.
				cpu.add(t.col, us(after-before)/(n+2000))
				return nil
			}
		}
		if err := rotate(i, fs...); err != nil {
			return err
		}
		e.progress("apart: round %d/%d", i+1, e.o.tputRounds)
	}
	e.rows = append(e.rows, first, firstH2, seq, cpu)
	return nil
}
