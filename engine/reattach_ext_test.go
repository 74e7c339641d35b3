package engine_test

import (
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/vmre/vmre"
	"github.com/vmre/vmre/client"
	"github.com/vmre/vmre/engine"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
)

// TestAttachByName: handshakes under one name are one runtime. A new
// instance or address is a new incarnation (new StartedAt, an event); the
// same instance at the same address only refreshes it; without an
// instance every handshake is a new incarnation; without a name the
// address is the identity.
func TestAttachByName(t *testing.T) {
	t.Parallel()
	e := newEngine(t, nil, func(c *engine.Config) { c.SampleInterval = -1 })
	attach := func(name, instance, addr string) engine.Runtime {
		t.Helper()
		rt, err := e.AttachWith(engine.AttachRequest{Name: name, Instance: instance, ProtocolVersion: 42, VMAddr: addr, PeerAddr: "127.0.0.1:1"})
		if err != nil {
			t.Fatal(err)
		}
		return rt
	}
	events := func(id string) int {
		t.Helper()
		_, evs, err := e.Get(id)
		if err != nil {
			t.Fatal(err)
		}
		return len(evs)
	}
	first := attach("subnet-a", "i1", "127.0.0.1:5000")
	if first.Name != "subnet-a" || first.State != engine.StateAttached {
		t.Fatalf("first: %+v", first)
	}
	n := events(first.ID)
	refreshed := attach("subnet-a", "i1", "127.0.0.1:5000")
	if refreshed.ID != first.ID || !refreshed.StartedAt.Equal(first.StartedAt) || events(first.ID) != n {
		t.Fatalf("refresh: id %s started %v, %d events; want %s, %v, %d", refreshed.ID, refreshed.StartedAt, events(first.ID), first.ID, first.StartedAt, n)
	}
	tests := []struct {
		name, instance, addr string
	}{
		{name: "new instance", instance: "i2", addr: "127.0.0.1:5000"},
		{name: "new address", instance: "i2", addr: "127.0.0.1:5001"},
		{name: "no instance", instance: "", addr: "127.0.0.1:5001"},
	}
	prev := first
	for _, tt := range tests {
		rt := attach("subnet-a", tt.instance, tt.addr)
		_, evs, _ := e.Get(rt.ID)
		if rt.ID != first.ID || !rt.StartedAt.After(prev.StartedAt) || rt.VMAddr != tt.addr ||
			!strings.Contains(evs[len(evs)-1].Message, "new incarnation") {
			t.Fatalf("%s: %+v, last event %q; want %s in a new incarnation at %s", tt.name, rt, evs[len(evs)-1].Message, first.ID, tt.addr)
		}
		prev = rt
	}
	other := attach("subnet-b", "i1", "127.0.0.1:5000")
	anon := attach("", "", "127.0.0.1:5002")
	anonAgain := attach("", "", "127.0.0.1:5002")
	if other.ID == first.ID || anon.Name != "attached 127.0.0.1:5002" || anonAgain.ID != anon.ID {
		t.Fatalf("other %s, anonymous %q %s then %s", other.ID, anon.Name, anon.ID, anonAgain.ID)
	}
	if n := len(e.List()); n != 3 {
		t.Fatalf("%d runtimes, want 3", n)
	}
}

// TestReattachAfterLost: a VM lost to its probes that attaches again under
// its name gets its id back, leaves the history, and is probed again.
func TestReattachAfterLost(t *testing.T) {
	t.Parallel()
	vm := startVMServer(t, true)
	vm.set(healthpb.HealthCheckResponse_SERVING)
	clock := newFakeClock()
	check := engine.HealthCheck{Interval: 10 * time.Second, Timeout: 5 * time.Second, FailureThreshold: 1}
	e := newEngine(t, nil, func(c *engine.Config) { c.Clock = clock; c.SampleInterval = -1; c.AttachHealth = check })
	w := watchFromSnapshot(t, e)
	req := engine.AttachRequest{Name: "subnet-a", ProtocolVersion: 42, VMAddr: vm.addr, PeerAddr: "127.0.0.1:1"}
	first, err := e.AttachWith(req)
	if err != nil {
		t.Fatal(err)
	}
	expectState(t, w, first.ID, engine.StateAttached)
	vm.srv.Stop()
	clock.advance(check.Interval)
	expectState(t, w, first.ID, engine.StateUnhealthy)
	expectState(t, w, first.ID, engine.StateLost)

	restarted := startVMServer(t, true)
	restarted.set(healthpb.HealthCheckResponse_SERVING)
	req.VMAddr = restarted.addr
	again, err := e.AttachWith(req)
	if err != nil {
		t.Fatal(err)
	}
	if again.ID != first.ID || again.State != engine.StateAttached || !again.ExitedAt.IsZero() || again.LastError != "" {
		t.Fatalf("re-attached: %+v; want %s attached, no exit, no last error", again, first.ID)
	}
	expectState(t, w, first.ID, engine.StateAttached)
	if e.LiveCount() != 1 {
		t.Fatalf("live count %d, want 1", e.LiveCount())
	}
	probeOnce(t, clock, check.Interval)
	if rt, _, _ := e.Get(first.ID); rt.Health != engine.HealthServing || restarted.checks.Load() != 1 {
		t.Fatalf("after a probe: health %v, checks %d; want the new process probed", rt.Health, restarted.checks.Load())
	}
}

// TestAttachEndpointTakesName: the attach endpoint names the runtime after
// the Vmre-Runtime-Name header vmre's client sends, and refuses a name
// too long for a listing.
func TestAttachEndpointTakesName(t *testing.T) {
	t.Parallel()
	e := newEngine(t, nil, func(c *engine.Config) { c.SampleInterval = -1 })
	secret := "attach-secret-0123456789"
	a, err := e.ServeAttach("127.0.0.1:0", secret)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = a.Close(t.Context()) })
	if err := client.New(a.Addr(), client.WithToken(secret), client.WithName("subnet-a")).Initialize(t.Context(), 42, "127.0.0.1:5100"); err != nil {
		t.Fatal(err)
	}
	if rts := e.List(); len(rts) != 1 || rts[0].Name != "subnet-a" {
		t.Fatalf("runtimes %+v, want one named subnet-a", rts)
	}
	err = client.New(a.Addr(), client.WithToken(secret), client.WithName(strings.Repeat("n", 129))).Initialize(t.Context(), 42, "127.0.0.1:5101")
	if !errors.Is(err, vmre.ErrInvalidRequest) {
		t.Fatalf("a name of 129 bytes: %v, want ErrInvalidRequest", err)
	}
}
