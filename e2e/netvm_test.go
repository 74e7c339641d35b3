package e2e

import (
	"context"
	"fmt"
	"net"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/vmre/vmre"
	"github.com/vmre/vmre/client"
	"google.golang.org/grpc"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
)

// netVMChild, set to "1" in a child's environment, makes the e2e test
// binary run netVM instead of the tests.
const netVMChild = "VMRE_E2E_NET_VM"

// Settings of the VM child: the address it serves on ("10.x.y.z:0") and
// the interval of its re-registering handshakes (a Go duration).
const (
	netVMListen  = "VMRE_E2E_NET_VM_LISTEN"
	netVMRefresh = "VMRE_E2E_NET_VM_REFRESH"
)

// netVM is an avalanchego-style VM on a host of its own: a grpc-go server
// with grpc.health.v1 on netVMListen, kept attached by vmre's client
// (client.Attacher) to the engine its environment names: VMRE_ENGINE_ADDR,
// VMRE_HANDSHAKE_TOKEN, VMRE_RUNTIME_NAME and the TLS files. It prints
// "vm listening ADDR", then "vm attached" after every handshake the engine
// accepted, and serves until SIGTERM.
func netVM() int {
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, os.Interrupt)
	defer stop()
	lis, err := net.Listen("tcp", os.Getenv(netVMListen))
	if err != nil {
		fmt.Fprintf(os.Stderr, "vm: listen: %v\n", err)
		return 1
	}
	srv := grpc.NewServer()
	healthpb.RegisterHealthServer(srv, health.NewServer())
	go func() { _ = srv.Serve(lis) }()
	defer srv.Stop()
	refresh, err := time.ParseDuration(os.Getenv(netVMRefresh))
	if err != nil {
		fmt.Fprintf(os.Stderr, "vm: %s: %v\n", netVMRefresh, err)
		return 1
	}
	addr := lis.Addr().String()
	fmt.Printf("vm listening %s\n", addr)
	a := &client.Attacher{
		ProtocolVersion: vmre.ProtocolVersion,
		VMAddr:          addr,
		Refresh:         refresh,
		OnHandshake: func(err error) {
			if err != nil {
				fmt.Printf("vm handshake refused: %v\n", err)
				return
			}
			fmt.Println("vm attached")
		},
	}
	if err := a.Run(ctx); ctx.Err() == nil {
		fmt.Fprintf(os.Stderr, "vm: attach: %v\n", err)
		return 1
	}
	return 0
}
