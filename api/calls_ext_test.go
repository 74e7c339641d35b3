package api_test

import (
	"context"
	"strings"
	"testing"
	"time"

	"connectrpc.com/connect"
	"github.com/vmre/vmre"
	"github.com/vmre/vmre/api"
	"github.com/vmre/vmre/engine"
	vmrev1 "github.com/vmre/vmre/gen/vmre/v1"
	"github.com/vmre/vmre/gen/vmre/v1/vmrev1connect"
	"github.com/vmre/vmre/internal/h2raw"
	"github.com/vmre/vmre/subprocess"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
)

// openList opens a ListRuntimes call on c and returns its stream id.
func openList(t *testing.T, h *harness, c *h2raw.Conn) uint32 {
	t.Helper()
	return openGRPC(t, h, c, vmrev1connect.RuntimeServiceListRuntimesProcedure, &vmrev1.ListRuntimesRequest{})
}

// nextAnswer returns c's next event on a stream, failing the test if the
// connection ends first or nothing comes for a minute.
func nextAnswer(t *testing.T, c *h2raw.Conn) h2raw.Event {
	t.Helper()
	bound := time.After(time.Minute) // a bound for a hung test, not a timing assertion
	for {
		select {
		case ev, ok := <-c.Events():
			if !ok {
				t.Fatal("connection ended")
			}
			if ev.Stream != 0 {
				return ev
			}
		case <-bound:
			t.Fatal("no answer on any stream for a minute")
		}
	}
}

// TestCallLimitEvictsStalledCalls: at MaxCalls, a new call ends the call
// that has waited the longest for its client to accept its answer (a
// client with a flow-control window of 0): the stalled calls never grow
// past the cap, and readers are served.
func TestCallLimitEvictsStalledCalls(t *testing.T) {
	t.Parallel()
	const maxCalls = 2
	h := start(t, func(c *api.Config) {
		c.MaxCalls = maxCalls
		c.SendTimeout = time.Hour // only the limit may end the calls below
	})
	stalled := dialStalled(t, h, 0, 64)
	var open []uint32 // stalled calls held, oldest first
	openStalled := func() {
		t.Helper()
		sid := openList(t, h, stalled)
		for {
			ev := nextAnswer(t, stalled)
			switch {
			case ev.Kind == "headers" && ev.Stream == sid && !ev.EndStream:
				open = append(open, sid) // its answer waits on the window
				return
			case ev.Kind == "rst" && len(open) > 0 && ev.Stream == open[0]:
				open = open[1:]
			default:
				t.Fatalf("stream %d opened, %d..%d held: unexpected %+v", sid, open[0], open[len(open)-1], ev)
			}
		}
	}
	for range maxCalls {
		openStalled()
	}
	// Each new stalled call ends the oldest one.
	for range 5 {
		oldest := open[0]
		openStalled()
		if len(open) > maxCalls {
			ev := nextAnswer(t, stalled)
			if ev.Kind != "rst" || ev.Stream != oldest {
				t.Fatalf("after a call beyond the limit: %+v, want a reset of the oldest stalled call %d", ev, oldest)
			}
			open = open[1:]
		}
	}
	// A reader gets its answer, ending the oldest stalled call.
	client := h.grpcClient()
	ctx, cancel := context.WithTimeout(t.Context(), time.Minute) // a bound for a hung call
	defer cancel()
	if _, err := client.ListRuntimes(ctx, &vmrev1.ListRuntimesRequest{}); err != nil {
		t.Fatalf("list with %d stalled calls held: %v", len(open), err)
	}
	if ev := nextAnswer(t, stalled); ev.Kind != "rst" || ev.Stream != open[0] {
		t.Fatalf("after a reader's call: %+v, want a reset of stream %d", ev, open[0])
	}
	// 5 stalled calls and the reader's made room; the scrape may too.
	if s := scrape(t, h); s[`vmre_api_calls_evicted_total{}`] < 6 || s[`vmre_api_calls_refused_total{}`] != 0 {
		t.Errorf("evicted %v, refused %v; want at least 6 and 0",
			s[`vmre_api_calls_evicted_total{}`], s[`vmre_api_calls_refused_total{}`])
	}
}

// gatedLauncher is a fakeLauncher whose launches of gatedPath, once gate
// is set, report on entered and wait for the gate to close.
type gatedLauncher struct {
	fakeLauncher
	gate    chan struct{}
	entered chan struct{}
}

const gatedPath = "/opt/gated"

func (g *gatedLauncher) Launch(ctx context.Context, spec engine.Spec, output func(*subprocess.Line)) (subprocess.Status, vmre.Runtime, error) {
	if spec.Path == gatedPath {
		if gate := g.gated(); gate != nil {
			g.entered <- struct{}{}
			select {
			case <-gate:
			case <-ctx.Done():
			}
		}
	}
	return g.fakeLauncher.Launch(ctx, spec, output)
}

func (g *gatedLauncher) gated() chan struct{} {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.gate
}

// TestCallLimitRefusesWhenNoneStalled: at MaxCalls with every call busy in
// its handler (restarts waiting for their relaunch), a new call is refused
// with resource_exhausted in every protocol, while health checks and
// callers with the token still get in; places come back when calls end.
func TestCallLimitRefusesWhenNoneStalled(t *testing.T) {
	t.Parallel()
	const maxCalls = 2
	launcher := &gatedLauncher{entered: make(chan struct{}, maxCalls)}
	h := startEngine(t, engine.Config{Launcher: launcher}, func(c *api.Config) { c.MaxCalls = maxCalls })
	ctx, cancel := context.WithTimeout(t.Context(), time.Minute) // a bound for a hung test
	defer cancel()
	withToken := h.grpcClient(withBearer(testToken))
	var ids []string
	for range maxCalls {
		rt, err := h.engine.Launch(ctx, engine.Spec{Path: gatedPath})
		if err != nil {
			t.Fatal(err)
		}
		ids = append(ids, rt.ID)
	}
	gate := make(chan struct{})
	launcher.mu.Lock()
	launcher.gate = gate
	launcher.mu.Unlock()
	restarts := make(chan error, maxCalls)
	for _, id := range ids {
		go func() {
			_, err := withToken.RestartRuntime(ctx, &vmrev1.RestartRuntimeRequest{Id: id})
			restarts <- err
		}()
	}
	for range maxCalls {
		<-launcher.entered
	}

	anonymous := h.grpcClient()
	_, err := anonymous.ListRuntimes(ctx, &vmrev1.ListRuntimesRequest{})
	if connect.CodeOf(err) != connect.CodeResourceExhausted || !strings.Contains(err.Error(), "(2)") {
		t.Fatalf("list with %d calls busy: %v, want resource_exhausted naming the limit", maxCalls, err)
	}
	for name, client := range map[string]vmrev1connect.RuntimeServiceClient{
		"connect json, http/1.1": h.client(connect.WithProtoJSON()),
		"grpc-web":               vmrev1connect.NewRuntimeServiceClient(h2cClient(), h.url, connect.WithGRPCWeb()),
	} {
		if _, err := client.ListRuntimes(ctx, &vmrev1.ListRuntimesRequest{}); connect.CodeOf(err) != connect.CodeResourceExhausted {
			t.Errorf("%s: %v, want resource_exhausted", name, err)
		}
	}
	health := healthpb.NewHealthClient(h.grpcConn(t))
	if _, err := health.Check(ctx, &healthpb.HealthCheckRequest{}); err != nil {
		t.Errorf("health at the limit: %v", err)
	}
	if _, err := withToken.ListRuntimes(ctx, &vmrev1.ListRuntimesRequest{}); err != nil {
		t.Errorf("list with the token at the limit: %v", err)
	}

	close(gate)
	for range maxCalls {
		if err := <-restarts; err != nil {
			t.Errorf("restart: %v", err)
		}
	}
	if _, err := anonymous.ListRuntimes(ctx, &vmrev1.ListRuntimesRequest{}); err != nil {
		t.Errorf("list once the restarts returned: %v", err)
	}
	// gRPC, Connect and gRPC-Web were refused; nothing was evicted.
	if s := scrape(t, h); s[`vmre_api_calls_refused_total{}`] != 3 || s[`vmre_api_calls_evicted_total{}`] != 0 || s[`vmre_api_calls{}`] != 1 {
		t.Errorf("refused %v, evicted %v, in flight %v; want 3, 0 and 1 (the scrape)", s[`vmre_api_calls_refused_total{}`],
			s[`vmre_api_calls_evicted_total{}`], s[`vmre_api_calls{}`])
	}
}
