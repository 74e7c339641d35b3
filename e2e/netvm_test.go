package e2e

import (
	"context"
	"fmt"
	"net"
	"os"
	"os/signal"
	"syscall"

	"github.com/vmre/vmre"
	"github.com/vmre/vmre/client"
	"google.golang.org/grpc"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
)

// netVMChild, set to "1" in a child's environment, makes the e2e test
// binary run netVM instead of the tests.
const netVMChild = "VMRE_E2E_NET_VM"

// netVMListen names the address the VM child serves on ("10.x.y.z:0").
const netVMListen = "VMRE_E2E_NET_VM_LISTEN"

// netVM is an avalanchego-style VM on a host of its own: a grpc-go server
// with grpc.health.v1 on netVMListen, and the handshake through vmre's
// client with the engine its environment names (VMRE_ENGINE_ADDR,
// VMRE_HANDSHAKE_TOKEN). It prints "vm listening ADDR", then "vm attached"
// once the engine accepted it, and serves until SIGTERM.
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
	addr := lis.Addr().String()
	fmt.Printf("vm listening %s\n", addr)
	if err := client.Handshake(ctx, vmre.ProtocolVersion, addr); err != nil {
		fmt.Printf("vm handshake failed: %v\n", err)
		return 1
	}
	fmt.Println("vm attached")
	<-ctx.Done()
	return 0
}
