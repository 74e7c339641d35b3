package api_test

import (
	"context"
	"net"
	"testing"
	"time"

	"github.com/vmre/vmre"
	"github.com/vmre/vmre/engine"
	"github.com/vmre/vmre/gen/vmre/v1/vmrev1connect"
	"github.com/vmre/vmre/subprocess"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/status"
)

// vmLauncher "launches" a fake process whose VM address is a real grpc-go
// server's, so that the engine's liveness probe talks to a real peer.
type vmLauncher struct{ addr string }

func (l vmLauncher) Launch(context.Context, engine.Spec, func(*subprocess.Line)) (subprocess.Status, vmre.Runtime, error) {
	return subprocess.Status{Pid: 4242, Addr: l.addr, ProtocolVersion: 42, StartedAt: time.Now()},
		&fakeProc{done: make(chan struct{})}, nil
}

// healthVM serves grpc.health.v1 on loopback with grpc-go, as a VM plugin
// does, and returns its address and health server.
func healthVM(t *testing.T) (string, *health.Server, *grpc.Server) {
	t.Helper()
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := grpc.NewServer()
	hs := health.NewServer()
	healthpb.RegisterHealthServer(srv, hs)
	go func() { _ = srv.Serve(lis) }()
	t.Cleanup(srv.Stop)
	return lis.Addr().String(), hs, srv
}

// waitState reads w until runtime id is in state want.
func waitState(ctx context.Context, t *testing.T, w *engine.Watcher, id string, want engine.State) {
	t.Helper()
	for {
		c, err := w.Next(ctx)
		if err != nil {
			t.Fatalf("waiting for %s to be %s: %v", id, want, err)
		}
		rts := c.Snapshot
		if c.Kind != engine.ChangeSnapshot {
			rts = []engine.Runtime{c.Runtime}
		}
		for _, rt := range rts {
			if rt.ID == id && rt.State == want {
				return
			}
		}
	}
}

// TestHealthPerRuntime checks grpc.health.v1 answers for runtimes by name,
// through a real grpc-go health client, as a Kubernetes grpc probe asks,
// while a launched runtime goes unhealthy and back, exits, is relaunched,
// and while an attached runtime is lost.
func TestHealthPerRuntime(t *testing.T) {
	t.Parallel()
	vmAddr, vmHealth, _ := healthVM(t)
	attachedAddr, _, attachedVM := healthVM(t)
	h := startEngine(t, engine.Config{
		Launcher: vmLauncher{addr: vmAddr},
		// Probe timeouts are capped at the interval: a 10 ms interval
		// made a healthy VM fail probes at load 30. A second keeps
		// the test short and real failures prompt.
		AttachHealth: engine.HealthCheck{Interval: time.Second, FailureThreshold: 2},
	}, nil)
	ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
	defer cancel()
	client := healthpb.NewHealthClient(h.grpcConn(t))
	w := h.engine.Watch()
	defer w.Close()

	check := func(service string, want healthpb.HealthCheckResponse_ServingStatus) {
		t.Helper()
		resp, err := client.Check(ctx, &healthpb.HealthCheckRequest{Service: service})
		if err != nil || resp.GetStatus() != want {
			t.Fatalf("Check(%q) = %v, %v; want %v", service, resp.GetStatus(), err, want)
		}
	}
	notFound := func(service string) {
		t.Helper()
		if _, err := client.Check(ctx, &healthpb.HealthCheckRequest{Service: service}); status.Code(err) != codes.NotFound {
			t.Fatalf("Check(%q): %v, want NotFound", service, err)
		}
	}

	notFound("subnet-a")
	probe := engine.HealthCheck{Interval: time.Second, FailureThreshold: 1}
	rt, err := h.engine.Launch(ctx, engine.Spec{Name: "subnet-a", Path: "/fake/vm", Health: probe})
	if err != nil {
		t.Fatal(err)
	}
	check("subnet-a", healthpb.HealthCheckResponse_SERVING)
	notFound("subnet-b")

	vmHealth.SetServingStatus("", healthpb.HealthCheckResponse_NOT_SERVING)
	waitState(ctx, t, w, rt.ID, engine.StateUnhealthy)
	check("subnet-a", healthpb.HealthCheckResponse_NOT_SERVING)
	vmHealth.SetServingStatus("", healthpb.HealthCheckResponse_SERVING)
	waitState(ctx, t, w, rt.ID, engine.StateRunning)
	check("subnet-a", healthpb.HealthCheckResponse_SERVING)

	if _, err := h.engine.Stop(ctx, rt.ID); err != nil {
		t.Fatal(err)
	}
	check("subnet-a", healthpb.HealthCheckResponse_NOT_SERVING) // exited, still in the history
	// A relaunch under the same name is the same VM to an orchestrator.
	if _, err := h.engine.Launch(ctx, engine.Spec{Name: "subnet-a", Path: "/fake/vm"}); err != nil {
		t.Fatal(err)
	}
	check("subnet-a", healthpb.HealthCheckResponse_SERVING)

	att, err := h.engine.Attach(42, attachedAddr, "127.0.0.1:1")
	if err != nil {
		t.Fatal(err)
	}
	check(att.Name, healthpb.HealthCheckResponse_SERVING)
	attachedVM.Stop()
	waitState(ctx, t, w, att.ID, engine.StateLost)
	check(att.Name, healthpb.HealthCheckResponse_NOT_SERVING)

	// The engine's own answers are independent of its runtimes'.
	check("", healthpb.HealthCheckResponse_SERVING)
	check(vmrev1connect.RuntimeServiceName, healthpb.HealthCheckResponse_SERVING)
	h.handler.SetServing(false)
	check("", healthpb.HealthCheckResponse_NOT_SERVING)
	check(vmrev1connect.RuntimeServiceName, healthpb.HealthCheckResponse_NOT_SERVING)
	check("subnet-a", healthpb.HealthCheckResponse_SERVING)
}
