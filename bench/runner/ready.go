package main

import (
	"context"
	"fmt"
	"io"
	"time"

	"github.com/ava-labs/avalanchego/utils/logging"
	"github.com/ava-labs/avalanchego/vms/rpcchainvm/grpcutils"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/emptypb"
)

// benchReady measures what a node waits for before it can use a VM: from
// Bootstrap called until the plugin's own VM server answers a first call.
// avalanchego's rpcchainvm factory dials the VM address from the handshake
// (grpcutils.Dial) right after Bootstrap returns and calls the VM; a plugin
// built on rpcchainvm.Serve starts serving only once its Initialize call
// has its answer. So this row includes the engine writing that answer,
// which "launch -> handshake done" (Bootstrap returns) does not.
//
// The benchmark plugin serves an empty grpc-go server, so the call (the
// VM service's Version method) is answered "unimplemented": that answer
// comes from the plugin's running server, which is all that is timed.
func benchReady(ctx context.Context, e *env) error {
	vm := newVmreEngine(e.ava, io.Discard, 10*time.Second, 5*time.Second)
	av := newAvaEngine(e.ava, logging.Discard, 10*time.Second)
	ready := newRow("launch -> VM answers (Bootstrap called -> the plugin's VM server answers a first call on a new connection, as a node's next step)", "ms")

	// timed launches with launch, calls the VM at the address its
	// handshake gave and records the whole under col.
	timed := func(col string, rec bool, launch func() (stop func(), addr string, err error)) error {
		t0 := time.Now()
		stop, addr, err := launch()
		if err != nil {
			return fmt.Errorf("%s launch: %w", col, err)
		}
		defer stop()
		if err := callVM(ctx, addr); err != nil {
			return fmt.Errorf("%s: %w", col, err)
		}
		if rec {
			ready.add(col, ms(time.Since(t0)))
		}
		return nil
	}
	runVmre := func(rec bool) error {
		return timed(colVmre, rec, func() (func(), string, error) {
			p, st, err := vm.launch(ctx, "serve")
			if err != nil {
				return nil, "", err
			}
			return func() { p.Stop(ctx) }, st.Addr, nil
		})
	}
	runAva := func(rec bool) error {
		return timed(colAva, rec, func() (func(), string, error) {
			s, st, err := av.launch(ctx, "serve")
			if err != nil {
				return nil, "", err
			}
			return func() { s.Stop(ctx) }, st.Addr, nil
		})
	}
	runs := max(20, e.o.runs/2)
	for i := range warmups + runs {
		rec := i >= warmups
		if err := rotate(i, func() error { return runVmre(rec) }, func() error { return runAva(rec) }); err != nil {
			return err
		}
	}
	e.rows = append(e.rows, ready)
	return nil
}

// callVM dials addr the way avalanchego's rpcchainvm factory does and makes
// one call, waiting for the server to be up. Only "unimplemented" (the
// empty server's answer) counts as answered.
func callVM(ctx context.Context, addr string) error {
	conn, err := grpcutils.Dial(addr)
	if err != nil {
		return fmt.Errorf("dial VM %s: %w", addr, err)
	}
	defer conn.Close()
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	err = conn.Invoke(ctx, "/vm.VM/Version", &emptypb.Empty{}, &emptypb.Empty{})
	if status.Code(err) != codes.Unimplemented {
		return fmt.Errorf("call VM %s: got %v, want unimplemented", addr, err)
	}
	return nil
}
