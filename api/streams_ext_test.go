package api_test

import (
	"context"
	"runtime"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"connectrpc.com/connect"
	"github.com/vmre/vmre/api"
	"github.com/vmre/vmre/engine"
	vmrev1 "github.com/vmre/vmre/gen/vmre/v1"
	"github.com/vmre/vmre/gen/vmre/v1/vmrev1connect"
	"github.com/vmre/vmre/internal/h2raw"
	"github.com/vmre/vmre/subprocess"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	reflectionv1 "google.golang.org/grpc/reflection/grpc_reflection_v1"
	"google.golang.org/protobuf/proto"
)

// grpcResourceExhausted is resource_exhausted's gRPC status number.
const grpcResourceExhausted = "8"

// dialStalled opens a raw HTTP/2 connection to h whose flow-control
// window is window bytes per stream and is never raised: the server can
// send each stream its headers and window bytes of data, then nothing.
func dialStalled(t *testing.T, h *harness, window uint32, buffer int) *h2raw.Conn {
	t.Helper()
	c, err := h2raw.Dial(h.addr, window, buffer)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = c.Close() })
	return c
}

// openGRPC opens a gRPC call of procedure on c with req as its one
// message (none if req is nil) and returns its stream id.
func openGRPC(t *testing.T, h *harness, c *h2raw.Conn, procedure string, req proto.Message) uint32 {
	t.Helper()
	var msg []byte
	if req != nil {
		var err error
		if msg, err = proto.Marshal(req); err != nil {
			t.Fatal(err)
		}
	}
	sid, err := c.OpenGRPC(h.addr, procedure, msg)
	if err != nil {
		t.Fatal(err)
	}
	return sid
}

// openTail opens a following TailOutput of the runtime id on c.
func openTail(t *testing.T, h *harness, c *h2raw.Conn, id string, lines uint32) uint32 {
	t.Helper()
	return openGRPC(t, h, c, vmrev1connect.RuntimeServiceTailOutputProcedure, &vmrev1.TailOutputRequest{Id: id, Lines: lines, Follow: true})
}

// firstAnswers reads c's events until n streams have answered, on a
// connection from dialStalled with a window of 1: a stream the server
// serves sends a byte of its first message, a refused one its trailers with
// resource_exhausted. It returns how many of each; any other answer fails
// the test.
func firstAnswers(t *testing.T, c *h2raw.Conn, n int) (accepted, refused int) {
	t.Helper()
	seen := make(map[uint32]bool)
	for len(seen) < n {
		ev, ok := <-c.Events()
		if !ok {
			t.Fatalf("connection ended after %d of %d streams answered", len(seen), n)
		}
		if ev.Stream == 0 || seen[ev.Stream] {
			continue
		}
		switch {
		case ev.Kind == "headers" && ev.GRPCStatus == "" && !ev.EndStream:
			continue // the response's headers; the answer follows
		case ev.Kind == "data":
			accepted++
		case ev.Kind == "headers" && ev.GRPCStatus == grpcResourceExhausted:
			refused++
		default:
			t.Fatalf("stream %d: unexpected answer %+v", ev.Stream, ev)
		}
		seen[ev.Stream] = true
	}
	return accepted, refused
}

func launchWithOutput(t *testing.T, h *harness, lines, lineBytes int) (string, func(*subprocess.Line)) {
	t.Helper()
	rt, err := h.engine.Launch(t.Context(), engine.Spec{Path: "/bin/vm"})
	if err != nil {
		t.Fatal(err)
	}
	out := h.launcher.output(len(h.engine.List()) - 1)
	text := []byte(strings.Repeat("x", lineBytes))
	for range lines {
		out(&subprocess.Line{Stream: "stdout", Text: text})
	}
	return rt.ID, out
}

// TestStreamLimits: streams beyond the per-connection and the total limit
// are refused with resource_exhausted before anything is sent, and a
// stream's slot is free again once it ends.
func TestStreamLimits(t *testing.T) {
	t.Parallel()
	h := start(t, func(c *api.Config) {
		c.MaxStreams, c.MaxStreamsPerConn = 5, 3
		c.SendTimeout = time.Hour // the streams below stall on purpose
	})
	id, _ := launchWithOutput(t, h, 10, 100)

	a := dialStalled(t, h, 1, 64)
	for range 4 {
		openTail(t, h, a, id, 10)
	}
	if acc, ref := firstAnswers(t, a, 4); acc != 3 || ref != 1 {
		t.Fatalf("connection a: %d accepted, %d refused; want 3 and 1 (3 per connection)", acc, ref)
	}
	b := dialStalled(t, h, 1, 64)
	for range 3 {
		openTail(t, h, b, id, 10)
	}
	if acc, ref := firstAnswers(t, b, 3); acc != 2 || ref != 1 {
		t.Fatalf("connection b: %d accepted, %d refused; want 2 and 1 (5 in all)", acc, ref)
	}

	// WatchRuntimes counts too, and the refusal names the limit.
	client := h.grpcClient()
	ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
	defer cancel()
	w, err := client.WatchRuntimes(ctx, &vmrev1.WatchRuntimesRequest{})
	if err != nil {
		t.Fatal(err)
	}
	if w.Receive() || connect.CodeOf(w.Err()) != connect.CodeResourceExhausted || !strings.Contains(w.Err().Error(), "(5)") {
		t.Fatalf("watch beyond the limit: %v, want resource_exhausted naming the limit", w.Err())
	}
	_ = w.Close()
	// Unary calls are not streams: health and reads still work.
	if _, err := client.ListRuntimes(ctx, &vmrev1.ListRuntimesRequest{}); err != nil {
		t.Fatalf("list while the streams are full: %v", err)
	}

	// Closing a's connection ends its three streams; their slots come
	// back once their handlers have returned.
	_ = a.Close()
	for {
		w, err := client.WatchRuntimes(ctx, &vmrev1.WatchRuntimesRequest{})
		if err != nil {
			t.Fatal(err)
		}
		if w.Receive() {
			_ = w.Close()
			break
		}
		if connect.CodeOf(w.Err()) != connect.CodeResourceExhausted {
			t.Fatalf("watch after a's streams ended: %v", w.Err())
		}
		_ = w.Close()
	}
}

// TestSendTimeoutEndsStalledStream: a stream whose client never opens its
// flow-control window is reset once a write has waited SendTimeout, and
// its slot (MaxStreams 1) is free for the next client. Reflection streams
// are not counted as watch or output streams, but are reset the same way.
func TestSendTimeoutEndsStalledStream(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		open func(t *testing.T, h *harness, c *h2raw.Conn, id string) uint32
	}{
		{"tail output", func(t *testing.T, h *harness, c *h2raw.Conn, id string) uint32 { return openTail(t, h, c, id, 10) }},
		{"watch runtimes", func(t *testing.T, h *harness, c *h2raw.Conn, _ string) uint32 {
			return openGRPC(t, h, c, vmrev1connect.RuntimeServiceWatchRuntimesProcedure, nil)
		}},
		{"reflection", func(t *testing.T, h *harness, c *h2raw.Conn, _ string) uint32 {
			return openGRPC(t, h, c, "/grpc.reflection.v1.ServerReflection/ServerReflectionInfo",
				&reflectionv1.ServerReflectionRequest{MessageRequest: &reflectionv1.ServerReflectionRequest_ListServices{ListServices: "*"}})
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			h := start(t, func(c *api.Config) {
				c.MaxStreams = 1
				c.SendTimeout = 50 * time.Millisecond
			})
			id, _ := launchWithOutput(t, h, 10, 100)
			c := dialStalled(t, h, 0, 64)
			sid := tt.open(t, h, c, id)
			// Bounded by the test binary's -timeout: without a send
			// timeout the reset never comes.
			for ev := range c.Events() {
				if ev.Stream != sid {
					continue
				}
				if ev.Kind == "rst" {
					break
				}
				if ev.Kind != "headers" || ev.EndStream {
					t.Fatalf("stalled stream: %+v, want its headers, then a reset", ev)
				}
			}
			client := h.grpcClient()
			for {
				ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
				w, err := client.WatchRuntimes(ctx, &vmrev1.WatchRuntimesRequest{})
				if err != nil {
					cancel()
					t.Fatal(err)
				}
				ok := w.Receive()
				err = w.Err()
				_ = w.Close()
				cancel()
				if ok {
					break
				}
				// The slot is freed when the reset stream's handler
				// returns, which may be just after the reset arrives.
				if connect.CodeOf(err) != connect.CodeResourceExhausted {
					t.Fatalf("watch after the stalled stream was reset: %v", err)
				}
			}
		})
	}
}

// TestZeroWindowFlood: 400 following TailOutput streams that can be sent
// one byte and no more, on 4 connections, each asking for all the 1 MiB of output a
// chatty runtime keeps while it keeps writing. The heap the engine holds
// stays bounded, every stream gets an answer (accepted or
// resource_exhausted), and health keeps answering within a generous
// factor of its own unflooded latency. Not parallel: it measures the
// process's heap and latency.
//
// The heap is measured after a GC on both sides, while the attack is
// held: what the engine keeps for the streams. Heap in use between GCs
// also counts garbage, and the runtime lets garbage grow in proportion
// to the live heap before it collects, so a peak between GCs measures
// what the rest of the process happens to hold.
func TestZeroWindowFlood(t *testing.T) {
	const (
		conns, perConn = 4, 100
		heapBound      = 64 << 20
		slowdown       = 20 // bound on the median under attack, times the unflooded p99
	)
	h := start(t, func(c *api.Config) { c.MaxStreamsPerConn = perConn }) // the total is the default
	id, out := launchWithOutput(t, h, 1000, 1000)

	health := healthpb.NewHealthClient(h.grpcConn(t))
	check := func() time.Duration {
		ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
		defer cancel()
		start := time.Now()
		if _, err := health.Check(ctx, &healthpb.HealthCheckRequest{}); err != nil {
			t.Fatalf("health: %v", err)
		}
		return time.Since(start)
	}
	check() // warm up
	var base []time.Duration
	for range 50 {
		base = append(base, check())
	}
	slices.Sort(base)
	baseP99 := base[len(base)*99/100]
	runtime.GC()
	baseHeap := heapInuse()

	// The runtime keeps writing, so every follower has lines waiting.
	stop := make(chan struct{})
	var wg sync.WaitGroup
	wg.Go(func() {
		text := []byte(strings.Repeat("y", 1000))
		tick := time.NewTicker(time.Millisecond)
		defer tick.Stop()
		for {
			select {
			case <-stop:
				return
			case <-tick.C:
			}
			for range 16 {
				out(&subprocess.Line{Stream: "stdout", Text: text})
			}
		}
	})
	defer func() {
		close(stop)
		wg.Wait()
	}()

	var attackers []*h2raw.Conn
	for range conns {
		c := dialStalled(t, h, 1, 4*perConn)
		for range perConn {
			openTail(t, h, c, id, 1_000_000)
		}
		attackers = append(attackers, c)
	}
	accepted := 0
	for _, c := range attackers {
		acc, _ := firstAnswers(t, c, perConn)
		accepted += acc
	}
	var lat []time.Duration
	for range 100 {
		lat = append(lat, check())
	}
	slices.Sort(lat)
	median := lat[len(lat)/2]
	runtime.GC()
	grew := int64(heapInuse()) - int64(baseHeap)
	t.Logf("%d of %d streams accepted; heap held %d MiB more under the flood; health median %v (unflooded p99 %v)",
		accepted, conns*perConn, grew>>20, median, baseP99)
	if grew > heapBound {
		t.Errorf("heap held %d MiB more under the flood, bound %d MiB", grew>>20, heapBound>>20)
	}
	if median > slowdown*baseP99 {
		t.Errorf("health median %v under the flood, over %d x its unflooded p99 %v", median, slowdown, baseP99)
	}
}

func heapInuse() uint64 {
	var m runtime.MemStats
	runtime.ReadMemStats(&m)
	return m.HeapInuse
}
