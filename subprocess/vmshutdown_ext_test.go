//go:build linux

package subprocess_test

import (
	"context"
	"fmt"
	"os"
	"os/signal"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/vmre/vmre/subprocess"
	"google.golang.org/grpc"
	"google.golang.org/protobuf/types/known/emptypb"
)

// noVMServiceEnv makes the rpcchainvm child serve gRPC without the VM
// service, and exit on the first SIGTERM.
const noVMServiceEnv = "SUBPROCESS_TEST_NO_VM_SERVICE"

// childRPCChainVM behaves like a plugin built on avalanchego's
// rpcchainvm.Serve: it serves gRPC on its VM address and ignores SIGTERM
// until the VM service's Shutdown method has been called.
func childRPCChainVM() int {
	signals := make(chan os.Signal, 2)
	signal.Notify(signals, syscall.SIGTERM)
	ln, err := handshake(childVersion())
	if err != nil {
		fmt.Fprintln(os.Stderr, "handshake:", err)
		return 1
	}
	var allowShutdown atomic.Bool
	srv := grpc.NewServer()
	if os.Getenv(noVMServiceEnv) == "" {
		srv.RegisterService(&grpc.ServiceDesc{
			ServiceName: "vm.VM",
			HandlerType: (*any)(nil),
			Methods: []grpc.MethodDesc{{
				MethodName: "Shutdown",
				Handler: func(_ any, _ context.Context, dec func(any) error, _ grpc.UnaryServerInterceptor) (any, error) {
					if err := dec(new(emptypb.Empty)); err != nil {
						return nil, err
					}
					allowShutdown.Store(true)
					fmt.Println("vm shutdown called")
					return &emptypb.Empty{}, nil
				},
			}},
		}, struct{}{})
	} else {
		allowShutdown.Store(true)
	}
	go func() { _ = srv.Serve(ln) }()
	fmt.Println("vm serving")
	for range signals {
		if !allowShutdown.Load() {
			fmt.Println("ignoring sigterm")
			continue
		}
		srv.Stop()
		fmt.Println("stopping on sigterm")
		return 0
	}
	return 1
}

// TestStopCallsVMShutdown: with Config.VMShutdown, a plugin that ignores
// SIGTERM until its VM's Shutdown method is called (avalanchego's
// rpcchainvm.Serve does) exits cleanly on Stop; without it, it is killed
// after the grace period. A VM server without the method answers
// unimplemented, and the stop goes on to SIGTERM.
func TestStopCallsVMShutdown(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name       string
		vmShutdown bool
		grace      time.Duration
		env        []string
		wantCode   int
		wantSignal string
		wantCall   bool
	}{
		// A generous grace: the clean exit must not come from a kill.
		{name: "with the call", vmShutdown: true, grace: 30 * time.Second, wantCode: 0, wantCall: true},
		{name: "without the call", vmShutdown: false, grace: 300 * time.Millisecond, wantCode: -1, wantSignal: "killed"},
		{name: "no vm service", vmShutdown: true, grace: 30 * time.Second, env: []string{noVMServiceEnv + "=1"}, wantCode: 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			out := newCollector()
			cfg := &subprocess.Config{VMShutdown: tt.vmShutdown, GracefulTimeout: tt.grace, OnOutput: out.add}
			_, p := mustBootstrap(t, "rpcchainvm", cfg, tt.env...)
			out.waitFor(t, textIs("vm serving"))
			p.Stop(t.Context())
			st := p.ExitStatus()
			if st.Code != tt.wantCode || st.Signal != tt.wantSignal {
				t.Errorf("exit code %d, signal %q; want %d, %q (%v)", st.Code, st.Signal, tt.wantCode, tt.wantSignal, p.Err())
			}
			called := false
			for _, l := range out.snapshot() {
				called = called || l.Text == "vm shutdown called"
			}
			if called != tt.wantCall {
				t.Errorf("vm shutdown called: %v, want %v; output %v", called, tt.wantCall, out.snapshot())
			}
		})
	}
}
