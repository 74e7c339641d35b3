package api_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"testing/fstest"
	"time"

	"connectrpc.com/connect"
	"github.com/rs/zerolog"
	"github.com/vmre/vmre"
	"github.com/vmre/vmre/api"
	"github.com/vmre/vmre/engine"
	vmrev1 "github.com/vmre/vmre/gen/vmre/v1"
	"github.com/vmre/vmre/gen/vmre/v1/vmrev1connect"
	"github.com/vmre/vmre/server"
	"github.com/vmre/vmre/subprocess"
	"go.uber.org/goleak"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	reflectionv1 "google.golang.org/grpc/reflection/grpc_reflection_v1"
	reflectionv1alpha "google.golang.org/grpc/reflection/grpc_reflection_v1alpha"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/descriptorpb"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

const testToken = "test-token-0123456789abcdef"

// fakeLauncher starts fake processes that exit when stopped.
type fakeLauncher struct {
	pid   atomic.Int64
	mu    sync.Mutex
	outFn []func(*subprocess.Line)
}

// Paths the fake launcher treats specially.
const (
	pathHandshakeTimeout = "/opt/no-handshake" // the launch fails: handshake timeout
	pathStubborn         = "/opt/stubborn"     // a stop must SIGKILL it
)

func (f *fakeLauncher) Launch(_ context.Context, spec engine.Spec, output func(*subprocess.Line)) (subprocess.Status, vmre.Runtime, error) {
	f.mu.Lock()
	f.outFn = append(f.outFn, output)
	f.mu.Unlock()
	if spec.Path == pathHandshakeTimeout {
		return subprocess.Status{}, nil, fmt.Errorf("%w: %w", vmre.ErrHandshakeFailed, vmre.ErrHandshakeTimeout)
	}
	return subprocess.Status{Pid: int(4000 + f.pid.Add(1)), Addr: "127.0.0.1:40001", ProtocolVersion: 42,
			StartedAt: time.Now(), HandshakeDuration: 3 * time.Millisecond},
		&fakeProc{done: make(chan struct{}), forced: spec.Path == pathStubborn}, nil
}

func (f *fakeLauncher) output(i int) func(*subprocess.Line) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.outFn[i]
}

type fakeProc struct {
	once   sync.Once
	done   chan struct{}
	forced bool // it ignores SIGTERM: a stop ends it with SIGKILL
}

func (p *fakeProc) Stop(context.Context)  { p.once.Do(func() { close(p.done) }) }
func (p *fakeProc) Done() <-chan struct{} { return p.done }
func (p *fakeProc) ExitStatus() vmre.ExitStatus {
	if p.forced {
		return vmre.ExitStatus{Code: -1, Signal: "killed", ForcedKill: true}
	}
	return vmre.ExitStatus{Code: -1, Signal: "terminated"}
}

type harness struct {
	engine   *engine.Engine
	launcher *fakeLauncher
	handler  *api.Handler
	url      string // http://127.0.0.1:PORT
	addr     string
}

// start serves an API handler over a real listener (HTTP/1.1 + h2c).
func start(t *testing.T, mod func(*api.Config)) *harness {
	t.Helper()
	return startEngine(t, engine.Config{}, mod)
}

// startEngine is start with an engine configured by ecfg (its Log is the
// harness's, and its Launcher too unless ecfg sets one).
func startEngine(t *testing.T, ecfg engine.Config, mod func(*api.Config)) *harness {
	t.Helper()
	l := &fakeLauncher{}
	if ecfg.Launcher == nil {
		ecfg.Launcher = l
	}
	ecfg.Log = zerolog.New(zerolog.NewTestWriter(t))
	eng, err := engine.New(ecfg)
	if err != nil {
		t.Fatal(err)
	}
	cfg := api.Config{Token: testToken, Dashboard: fstest.MapFS{"index.html": {Data: []byte("<!doctype html><title>vmre</title>")}}}
	if mod != nil {
		mod(&cfg)
	}
	h, err := api.New(eng, cfg)
	if err != nil {
		t.Fatal(err)
	}
	addr, shutdown := serveAPI(t, h)
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		eng.Close(ctx) // ends the streams, so Shutdown does not wait for them
		shutdown(ctx)
	})
	return &harness{engine: eng, launcher: l, handler: h, url: "http://" + addr, addr: addr}
}

// serveAPI serves h over a real listener (HTTP/1.1 + h2c) until shutdown
// is called.
func serveAPI(t *testing.T, h http.Handler) (addr string, shutdown func(context.Context)) {
	t.Helper()
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := server.NewHTTPServer(h)
	served := make(chan struct{})
	go func() {
		defer close(served)
		_ = srv.Serve(lis)
	}()
	return lis.Addr().String(), func(ctx context.Context) {
		_ = srv.Shutdown(ctx)
		<-served
	}
}

func h2cClient() *http.Client {
	var p http.Protocols
	p.SetUnencryptedHTTP2(true)
	return &http.Client{Transport: &http.Transport{Protocols: &p}}
}

func (h *harness) client(opts ...connect.ClientOption) vmrev1connect.RuntimeServiceClient {
	return vmrev1connect.NewRuntimeServiceClient(http.DefaultClient, h.url, opts...)
}

// grpcClient returns a client that speaks gRPC over h2c, as grpc-go does.
func (h *harness) grpcClient(opts ...connect.ClientOption) vmrev1connect.RuntimeServiceClient {
	return vmrev1connect.NewRuntimeServiceClient(h2cClient(), h.url, append([]connect.ClientOption{connect.WithGRPC()}, opts...)...)
}

func (h *harness) grpcConn(t *testing.T) *grpc.ClientConn {
	t.Helper()
	conn, err := grpc.NewClient(h.addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = conn.Close() })
	return conn
}

func withBearer(token string) connect.ClientOption {
	return connect.WithInterceptors(connect.UnaryInterceptorFunc(func(next connect.UnaryFunc) connect.UnaryFunc {
		return func(ctx context.Context, req connect.AnyRequest) (connect.AnyResponse, error) {
			req.Header().Set("Authorization", "Bearer "+token)
			return next(ctx, req)
		}
	}))
}

func TestStopNeedsToken(t *testing.T) {
	t.Parallel()
	h := start(t, nil)
	rt, err := h.engine.Launch(t.Context(), engine.Spec{Path: "/bin/vm"})
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name     string
		opts     []connect.ClientOption
		id       string
		wantCode connect.Code // 0: success
	}{
		{name: "no token", id: rt.ID, wantCode: connect.CodeUnauthenticated},
		{name: "wrong token", opts: []connect.ClientOption{withBearer("nope-nope-nope-nope")}, id: rt.ID, wantCode: connect.CodeUnauthenticated},
		{name: "no token, unknown id", id: "r99", wantCode: connect.CodeUnauthenticated},
		{name: "grpc-web, no token", opts: []connect.ClientOption{connect.WithGRPCWeb()}, id: rt.ID, wantCode: connect.CodeUnauthenticated},
		{name: "token, unknown id", opts: []connect.ClientOption{withBearer(testToken)}, id: "r99", wantCode: connect.CodeNotFound},
		{name: "token, empty id", opts: []connect.ClientOption{withBearer(testToken)}, id: "", wantCode: connect.CodeInvalidArgument},
		{name: "token", opts: []connect.ClientOption{withBearer(testToken), connect.WithGRPCWeb()}, id: rt.ID},
	}
	for _, tt := range tests { // sequential: the last case stops the runtime
		resp, err := h.client(tt.opts...).StopRuntime(t.Context(), &vmrev1.StopRuntimeRequest{Id: tt.id})
		if tt.wantCode == 0 {
			if err != nil {
				t.Fatalf("%s: %v", tt.name, err)
			}
			if s := resp.GetRuntime().GetState(); s != vmrev1.RuntimeState_RUNTIME_STATE_EXITED {
				t.Fatalf("%s: state %v, want exited", tt.name, s)
			}
			continue
		}
		if code := connect.CodeOf(err); code != tt.wantCode {
			t.Fatalf("%s: %v (code %v), want %v", tt.name, err, code, tt.wantCode)
		}
		if got, _, _ := h.engine.Get(rt.ID); got.State != engine.StateRunning {
			t.Fatalf("%s: runtime state %v after a refused stop", tt.name, got.State)
		}
	}
	// Restart is guarded the same way, and reads are not.
	if _, err := h.client().RestartRuntime(t.Context(), &vmrev1.RestartRuntimeRequest{Id: rt.ID}); connect.CodeOf(err) != connect.CodeUnauthenticated {
		t.Fatalf("restart without token: %v", err)
	}
	restarted, err := h.client(withBearer(testToken)).RestartRuntime(t.Context(), &vmrev1.RestartRuntimeRequest{Id: rt.ID})
	if err != nil || restarted.GetRuntime().GetState() != vmrev1.RuntimeState_RUNTIME_STATE_RUNNING || restarted.GetRuntime().GetRestarts() != 1 {
		t.Fatalf("restart with token: %v, %v", restarted, err)
	}
	if _, err := h.client().ListRuntimes(t.Context(), &vmrev1.ListRuntimesRequest{}); err != nil {
		t.Fatalf("list without token: %v", err)
	}
}

func TestAttachedRuntimeCannotBeStopped(t *testing.T) {
	t.Parallel()
	h := start(t, nil)
	rt, err := h.engine.Attach(42, "127.0.0.1:50001", "127.0.0.1:1")
	if err != nil {
		t.Fatal(err)
	}
	_, err = h.client(withBearer(testToken)).StopRuntime(t.Context(), &vmrev1.StopRuntimeRequest{Id: rt.ID})
	if connect.CodeOf(err) != connect.CodeFailedPrecondition || !strings.Contains(err.Error(), "not ours to stop") {
		t.Fatalf("stop attached: %v", err)
	}
}

func TestListAndGet(t *testing.T) {
	t.Parallel()
	h := start(t, nil)
	if _, err := h.engine.Launch(t.Context(), engine.Spec{Path: "/opt/examplevm", Args: []string{"-x"}}); err != nil {
		t.Fatal(err)
	}
	list, err := h.client(connect.WithGRPC(), connect.WithHTTPGet()).ListRuntimes(t.Context(), &vmrev1.ListRuntimesRequest{})
	if err != nil {
		t.Fatal(err)
	}
	if len(list.GetRuntimes()) != 1 {
		t.Fatalf("ListRuntimes = %v", list)
	}
	rt := list.GetRuntimes()[0]
	if rt.GetId() != "r1" || rt.GetName() != "examplevm" || rt.GetPid() == 0 || rt.GetVmAddr() != "127.0.0.1:40001" ||
		rt.GetProtocolVersion() != 42 || rt.GetHandshakeDuration().AsDuration() != 3*time.Millisecond ||
		!slices.Equal(rt.GetCommand(), []string{"/opt/examplevm", "-x"}) || rt.GetStartedAt() == nil ||
		rt.GetState() != vmrev1.RuntimeState_RUNTIME_STATE_RUNNING {
		t.Fatalf("runtime = %v", rt)
	}
	got, err := h.client().GetRuntime(t.Context(), &vmrev1.GetRuntimeRequest{Id: "r1"})
	if err != nil || len(got.GetEvents()) != 2 {
		t.Fatalf("GetRuntime = %v, %v", got, err)
	}
	if _, err := h.client().GetRuntime(t.Context(), &vmrev1.GetRuntimeRequest{Id: "r2"}); connect.CodeOf(err) != connect.CodeNotFound {
		t.Fatalf("GetRuntime unknown: %v", err)
	}
}

// Watch over gRPC-Web (what the dashboard speaks): a snapshot, then the
// changes as they happen.
func TestWatchStream(t *testing.T) {
	t.Parallel()
	h := start(t, nil)
	if _, err := h.engine.Attach(42, "127.0.0.1:50001", "p"); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
	defer cancel()
	stream, err := h.client(connect.WithGRPCWeb()).WatchRuntimes(ctx, &vmrev1.WatchRuntimesRequest{})
	if err != nil {
		t.Fatal(err)
	}
	defer stream.Close()
	if !stream.Receive() {
		t.Fatalf("no snapshot: %v", stream.Err())
	}
	snap := stream.Msg().GetSnapshot()
	if snap == nil || len(snap.GetRuntimes()) != 1 || stream.Msg().GetServerTime() == nil {
		t.Fatalf("first message = %v", stream.Msg())
	}
	if _, err := h.engine.Attach(42, "127.0.0.1:50002", "p"); err != nil {
		t.Fatal(err)
	}
	if !stream.Receive() {
		t.Fatalf("no change: %v", stream.Err())
	}
	msg := stream.Msg()
	if msg.GetRuntime().GetVmAddr() != "127.0.0.1:50002" || msg.GetRuntime().GetState() != vmrev1.RuntimeState_RUNTIME_STATE_ATTACHED ||
		msg.GetEvent().GetMessage() == "" {
		t.Fatalf("change = %v", msg)
	}
}

// Every watch and tail message names the engine that sent it, and another
// engine (as after a restart of vmre) has another id; a watch's snapshot
// says when the engine started and its version.
func TestEngineInstanceID(t *testing.T) {
	t.Parallel()
	h, other := start(t, func(c *api.Config) { c.Version = "v1.2.3-test" }), start(t, nil)
	id := h.engine.InstanceID()
	if id == "" || id == other.engine.InstanceID() {
		t.Fatalf("instance ids %q and %q, want two different non-empty ids", id, other.engine.InstanceID())
	}
	rt, err := h.engine.Launch(t.Context(), engine.Spec{Path: "/bin/vm"})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
	defer cancel()
	client := h.client(connect.WithGRPCWeb())

	watch, err := client.WatchRuntimes(ctx, &vmrev1.WatchRuntimesRequest{})
	if err != nil {
		t.Fatal(err)
	}
	defer watch.Close()
	if !watch.Receive() {
		t.Fatal(watch.Err())
	}
	if got := watch.Msg().GetEngineInstanceId(); got != id {
		t.Errorf("snapshot's engine instance id %q, want %q", got, id)
	}
	snap := watch.Msg().GetSnapshot()
	if got := snap.GetEngineStartedAt().AsTime(); !got.Equal(h.engine.StartedAt()) || got.IsZero() {
		t.Errorf("snapshot's engine start %v, want %v", got, h.engine.StartedAt())
	}
	if got := snap.GetEngineVersion(); got != "v1.2.3-test" {
		t.Errorf("snapshot's engine version %q, want the configured v1.2.3-test", got)
	}
	if _, err := h.engine.Attach(42, "127.0.0.1:50001", "p"); err != nil {
		t.Fatal(err)
	}
	if !watch.Receive() {
		t.Fatal(watch.Err())
	}
	if got := watch.Msg().GetEngineInstanceId(); got != id || watch.Msg().GetRuntime() == nil {
		t.Errorf("change %v: engine instance id %q, want %q", watch.Msg(), got, id)
	}

	// Without a configured version, the build's: "(devel)" in a test binary.
	otherWatch, err := other.client(connect.WithGRPCWeb()).WatchRuntimes(ctx, &vmrev1.WatchRuntimesRequest{})
	if err != nil {
		t.Fatal(err)
	}
	defer otherWatch.Close()
	if !otherWatch.Receive() {
		t.Fatal(otherWatch.Err())
	}
	if got := otherWatch.Msg().GetSnapshot().GetEngineVersion(); got == "" {
		t.Error("snapshot's engine version is empty without a configured one")
	}

	tail, err := client.TailOutput(ctx, &vmrev1.TailOutputRequest{Id: rt.ID, Follow: true})
	if err != nil {
		t.Fatal(err)
	}
	defer tail.Close()
	if !tail.Receive() {
		t.Fatal(tail.Err())
	}
	if got := tail.Msg().GetEngineInstanceId(); got != id {
		t.Errorf("first tail message's engine instance id %q, want %q", got, id)
	}
	h.launcher.output(0)(&subprocess.Line{Stream: "stdout", Text: []byte("later")})
	if !tail.Receive() {
		t.Fatal(tail.Err())
	}
	if got := tail.Msg().GetEngineInstanceId(); got != id || len(tail.Msg().GetLines()) != 1 {
		t.Errorf("followed message %v: engine instance id %q, want %q", tail.Msg(), got, id)
	}
}

// TailOutput over gRPC (h2c): the recent lines, then live ones.
func TestTailOutputStream(t *testing.T) {
	t.Parallel()
	h := start(t, nil)
	rt, err := h.engine.Launch(t.Context(), engine.Spec{Path: "/bin/vm"})
	if err != nil {
		t.Fatal(err)
	}
	out := h.launcher.output(0)
	out(&subprocess.Line{Stream: "stdout", Level: zerolog.InfoLevel, Text: []byte("first")})
	out(&subprocess.Line{Stream: "stderr", Level: zerolog.ErrorLevel, Text: []byte("second")})

	ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
	defer cancel()
	client := h.grpcClient()
	stream, err := client.TailOutput(ctx, &vmrev1.TailOutputRequest{Id: rt.ID, Lines: 1, Follow: true})
	if err != nil {
		t.Fatal(err)
	}
	defer stream.Close()
	if !stream.Receive() {
		t.Fatal(stream.Err())
	}
	lines := stream.Msg().GetLines()
	if len(lines) != 1 || lines[0].GetText() != "second" || lines[0].GetStream() != vmrev1.OutputStream_OUTPUT_STREAM_STDERR ||
		lines[0].GetLevel() != "error" || lines[0].GetPid() != int64(rt.Pid) || lines[0].GetSeq() != 2 {
		t.Fatalf("tail = %v", lines)
	}
	out(&subprocess.Line{Stream: "stdout", Text: []byte("third")})
	if !stream.Receive() {
		t.Fatal(stream.Err())
	}
	if lines := stream.Msg().GetLines(); len(lines) != 1 || lines[0].GetText() != "third" || lines[0].GetSeq() != 3 {
		t.Fatalf("followed = %v", lines)
	}
}

// TestTailOutputSplitsLargeOutput: an engine keeping more output than
// grpc-go's default 4 MiB receive limit still serves it to grpc-go, as a
// tail and as a followed backlog, in messages under that limit.
func TestTailOutputSplitsLargeOutput(t *testing.T) {
	t.Parallel()
	t.Run("long lines", func(t *testing.T) { testTailOutputSplits(t, 512<<10, 12) }) // 6 MiB of text
	t.Run("short lines", func(t *testing.T) { testTailOutputSplits(t, 1, 400_000) }) // 400 KB of text, over 4 MiB encoded
}

func testTailOutputSplits(t *testing.T, lineLen, count int) {
	t.Parallel()
	// Room for every line in the ring and in the follower's backlog
	// (4 x WatchBuffer lines), so none is dropped.
	// The client decodes messages of up to 1 MiB (100,000 short lines);
	// under -race on a loaded machine it has read nothing for over 30 s,
	// the default send timeout, while decoding one.
	h := startEngine(t, engine.Config{OutputBytes: 64 << 20, OutputLines: 2 * count, WatchBuffer: count/4 + 1},
		func(c *api.Config) { c.SendTimeout = 10 * time.Minute })
	rt, err := h.engine.Launch(t.Context(), engine.Spec{Path: "/bin/vm"})
	if err != nil {
		t.Fatal(err)
	}
	text := func(i int) string {
		if lineLen < 6 {
			return strings.Repeat("x", lineLen)
		}
		return fmt.Sprintf("%06d", i) + strings.Repeat("x", lineLen-6)
	}
	out := h.launcher.output(0)
	emit := func(first int) {
		for i := first; i < first+count; i++ {
			out(&subprocess.Line{Stream: "stdout", Text: []byte(text(i))})
		}
	}
	emit(0)

	// No deadline of its own: each receive waits for lines that are
	// already in the ring or the backlog, and under -race on two busy
	// cores serving them has taken over 20 s; the test binary's -timeout
	// bounds a server that never sends them.
	// grpc-go with its default receive limit, as a Go client would call.
	stream, err := h.grpcConn(t).NewStream(t.Context(), &grpc.StreamDesc{ServerStreams: true}, vmrev1connect.RuntimeServiceTailOutputProcedure)
	if err != nil {
		t.Fatal(err)
	}
	if err := stream.SendMsg(&vmrev1.TailOutputRequest{Id: rt.ID, Lines: uint32(count), Follow: true}); err != nil {
		t.Fatal(err)
	}
	if err := stream.CloseSend(); err != nil {
		t.Fatal(err)
	}
	next := 0
	receive := func(until int) {
		for next < until {
			msg := new(vmrev1.TailOutputResponse)
			if err := stream.RecvMsg(msg); err != nil {
				t.Fatalf("after line %d: %v", next, err)
			}
			if d := msg.GetDroppedLines(); d != 0 {
				t.Fatalf("after line %d: %d lines dropped", next, d)
			}
			for _, l := range msg.GetLines() {
				if l.GetSeq() != uint64(next+1) || l.GetText() != text(next) {
					t.Fatalf("line %d: seq %d, %d bytes", next, l.GetSeq(), len(l.GetText()))
				}
				next++
			}
		}
	}
	receive(count)
	emit(count) // all at once, so they wait in the follower's backlog
	receive(2 * count)
}

// Health and reflection, called by grpc-go as grpcurl and probes do.
func TestHealthAndReflection(t *testing.T) {
	t.Parallel()
	h := start(t, nil)
	conn := h.grpcConn(t)
	ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
	defer cancel()

	health := healthpb.NewHealthClient(conn)
	for _, svc := range []string{"", vmrev1connect.RuntimeServiceName} {
		resp, err := health.Check(ctx, &healthpb.HealthCheckRequest{Service: svc})
		if err != nil || resp.GetStatus() != healthpb.HealthCheckResponse_SERVING {
			t.Fatalf("Check(%q) = %v, %v", svc, resp, err)
		}
	}
	if _, err := health.Check(ctx, &healthpb.HealthCheckRequest{Service: "no.Such"}); status.Code(err).String() != "NotFound" {
		t.Fatalf("Check(no.Such): %v", err)
	}
	h.handler.SetServing(false)
	if resp, err := health.Check(ctx, &healthpb.HealthCheckRequest{}); err != nil || resp.GetStatus() != healthpb.HealthCheckResponse_NOT_SERVING {
		t.Fatalf("Check after SetServing(false) = %v, %v", resp, err)
	}

	want := []string{"grpc.health.v1.Health", "grpc.reflection.v1.ServerReflection", "grpc.reflection.v1alpha.ServerReflection", "vmre.v1.RuntimeService"}
	v1, err := reflectionv1.NewServerReflectionClient(conn).ServerReflectionInfo(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if err := v1.Send(&reflectionv1.ServerReflectionRequest{MessageRequest: &reflectionv1.ServerReflectionRequest_ListServices{}}); err != nil {
		t.Fatal(err)
	}
	resp, err := v1.Recv()
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, s := range resp.GetListServicesResponse().GetService() {
		names = append(names, s.GetName())
	}
	slices.Sort(names)
	if !slices.Equal(names, want) {
		t.Fatalf("v1 ListServices = %v, want %v", names, want)
	}
	// The service's file resolves, as grpcurl describe needs.
	if err := v1.Send(&reflectionv1.ServerReflectionRequest{MessageRequest: &reflectionv1.ServerReflectionRequest_FileContainingSymbol{FileContainingSymbol: "vmre.v1.RuntimeService"}}); err != nil {
		t.Fatal(err)
	}
	if resp, err := v1.Recv(); err != nil || len(resp.GetFileDescriptorResponse().GetFileDescriptorProto()) == 0 {
		t.Fatalf("FileContainingSymbol = %v, %v", resp, err)
	}
	// The handshake contract is described too, though served on the
	// handshake ports only: from vmre's own registry, not the global one.
	if err := v1.Send(&reflectionv1.ServerReflectionRequest{MessageRequest: &reflectionv1.ServerReflectionRequest_FileContainingSymbol{FileContainingSymbol: "vm.runtime.Runtime"}}); err != nil {
		t.Fatal(err)
	}
	resp, err = v1.Recv()
	if err != nil {
		t.Fatal(err)
	}
	var files []string
	for _, raw := range resp.GetFileDescriptorResponse().GetFileDescriptorProto() {
		fdp := new(descriptorpb.FileDescriptorProto)
		if err := proto.Unmarshal(raw, fdp); err != nil {
			t.Fatal(err)
		}
		files = append(files, fdp.GetName())
		if fdp.GetName() == "vm/runtime/runtime.proto" && (fdp.GetPackage() != "vm.runtime" || len(fdp.GetService()) != 1 || fdp.GetService()[0].GetName() != "Runtime") {
			t.Errorf("vm/runtime/runtime.proto described as %v", fdp)
		}
	}
	if !slices.Contains(files, "vm/runtime/runtime.proto") {
		t.Fatalf("FileContainingSymbol vm.runtime.Runtime = files %v, %v", files, resp.GetErrorResponse())
	}
	_ = v1.CloseSend()

	// v1alpha is deprecated, and what older grpcurl builds call.
	alpha, err := reflectionv1alpha.NewServerReflectionClient(conn).ServerReflectionInfo(ctx)
	if err != nil {
		t.Fatal(err)
	}
	//lint:ignore SA1019 v1alpha is what older grpcurl builds call
	if err := alpha.Send(&reflectionv1alpha.ServerReflectionRequest{MessageRequest: &reflectionv1alpha.ServerReflectionRequest_ListServices{}}); err != nil {
		t.Fatal(err)
	}
	aresp, err := alpha.Recv()
	//lint:ignore SA1019 v1alpha is what older grpcurl builds call
	if err != nil || len(aresp.GetListServicesResponse().GetService()) != len(want) {
		t.Fatalf("v1alpha ListServices = %v, %v", aresp, err)
	}
	_ = alpha.CloseSend()
}

func TestCORS(t *testing.T) {
	t.Parallel()
	const allowed = "http://localhost:3000"
	const foreign = "https://evil.example"
	sameOrigin := start(t, nil)
	withOrigin := start(t, func(c *api.Config) { c.CORSOrigins = []string{allowed} })
	list := vmrev1connect.RuntimeServiceListRuntimesProcedure

	preflight := func(h *harness, origin string) *http.Response {
		t.Helper()
		req, _ := http.NewRequestWithContext(t.Context(), http.MethodOptions, h.url+list, nil)
		req.Header.Set("Origin", origin)
		req.Header.Set("Access-Control-Request-Method", "POST")
		// Lowercase and sorted, as browsers send it.
		req.Header.Set("Access-Control-Request-Headers", "authorization,connect-protocol-version,content-type")
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		_ = resp.Body.Close()
		return resp
	}
	call := func(h *harness, origin string) *http.Response {
		t.Helper()
		req, _ := http.NewRequestWithContext(t.Context(), http.MethodPost, h.url+list, strings.NewReader("{}"))
		req.Header.Set("Origin", origin)
		req.Header.Set("Content-Type", "application/json")
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		_ = resp.Body.Close()
		return resp
	}
	noCORS := func(name string, resp *http.Response) {
		t.Helper()
		for k := range resp.Header {
			if strings.HasPrefix(strings.ToLower(k), "access-control-") {
				t.Fatalf("%s: got CORS header %s: %s", name, k, resp.Header.Get(k))
			}
		}
	}

	noCORS("same-origin only, foreign preflight", preflight(sameOrigin, foreign))
	noCORS("same-origin only, foreign call", call(sameOrigin, foreign))
	noCORS("same-origin only, would-be allowed origin", preflight(sameOrigin, allowed))
	noCORS("configured, foreign preflight", preflight(withOrigin, foreign))
	noCORS("configured, foreign call", call(withOrigin, foreign))

	resp := preflight(withOrigin, allowed)
	if resp.StatusCode != http.StatusNoContent || resp.Header.Get("Access-Control-Allow-Origin") != allowed ||
		!strings.Contains(strings.ToLower(resp.Header.Get("Access-Control-Allow-Headers")), "authorization") {
		t.Fatalf("allowed preflight: %d %v", resp.StatusCode, resp.Header)
	}
	resp = call(withOrigin, allowed)
	if resp.StatusCode != http.StatusOK || resp.Header.Get("Access-Control-Allow-Origin") != allowed ||
		!strings.Contains(resp.Header.Get("Access-Control-Expose-Headers"), "Grpc-Status") {
		t.Fatalf("allowed call: %d %v", resp.StatusCode, resp.Header)
	}

	// An origin configured with its scheme's default port matches what
	// browsers send: the origin without it.
	for configured, sent := range map[string]string{"http://localhost:80": "http://localhost", "https://app.example:443": "https://app.example"} {
		h := start(t, func(c *api.Config) { c.CORSOrigins = []string{configured} })
		if got := preflight(h, sent).Header.Get("Access-Control-Allow-Origin"); got != sent {
			t.Errorf("configured %s, preflight from %s: Access-Control-Allow-Origin %q", configured, sent, got)
		}
	}
}

func TestConfigValidation(t *testing.T) {
	t.Parallel()
	eng, err := engine.New(engine.Config{})
	if err != nil {
		t.Fatal(err)
	}
	defer eng.Close(t.Context())
	tests := []struct {
		name string
		cfg  api.Config
	}{
		{name: "no token", cfg: api.Config{}},
		{name: "wildcard origin", cfg: api.Config{Token: testToken, CORSOrigins: []string{"*"}}},
		{name: "origin with path", cfg: api.Config{Token: testToken, CORSOrigins: []string{"http://a.example/x"}}},
		{name: "origin without scheme", cfg: api.Config{Token: testToken, CORSOrigins: []string{"localhost:3000"}}},
	}
	for _, tt := range tests {
		if _, err := api.New(eng, tt.cfg); !errors.Is(err, vmre.ErrInvalidConfig) {
			t.Errorf("%s: %v, want ErrInvalidConfig", tt.name, err)
		}
	}
}

func TestDashboardHeaders(t *testing.T) {
	t.Parallel()
	h := start(t, nil)
	resp, err := http.Get(h.url + "/")
	if err != nil {
		t.Fatal(err)
	}
	_ = resp.Body.Close()
	if resp.StatusCode != http.StatusOK || !strings.HasPrefix(resp.Header.Get("Content-Type"), "text/html") ||
		!strings.Contains(resp.Header.Get("Content-Security-Policy"), "connect-src 'self'") ||
		resp.Header.Get("X-Frame-Options") != "DENY" {
		t.Fatalf("GET / = %d %v", resp.StatusCode, resp.Header)
	}
	resp, err = http.Get(h.url + "/nope.js")
	if err != nil {
		t.Fatal(err)
	}
	_ = resp.Body.Close()
	if resp.StatusCode != http.StatusNotFound {
		t.Fatalf("GET /nope.js = %d", resp.StatusCode)
	}
}

// A page that rebinds its DNS name to 127.0.0.1 sends its own name as Host:
// with loopback hosts only, it is refused; loopback names pass.
func TestHostCheck(t *testing.T) {
	t.Parallel()
	h := start(t, func(c *api.Config) { c.AllowedHosts = api.LoopbackHosts() })
	list := h.url + vmrev1connect.RuntimeServiceListRuntimesProcedure
	for _, tt := range []struct {
		host string
		want int
	}{
		{"", http.StatusOK}, // the listener's own 127.0.0.1:PORT
		{"localhost:9660", http.StatusOK},
		{"[::1]:9660", http.StatusOK},
		{"evil.example:9660", http.StatusForbidden},
		{"evil.example", http.StatusForbidden},
	} {
		req, _ := http.NewRequestWithContext(t.Context(), http.MethodPost, list, strings.NewReader("{}"))
		req.Header.Set("Content-Type", "application/json")
		if tt.host != "" {
			req.Host = tt.host
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		_ = resp.Body.Close()
		if resp.StatusCode != tt.want {
			t.Errorf("Host %q: status %d, want %d", tt.host, resp.StatusCode, tt.want)
		}
	}
	// gRPC clients send :authority = the dialed address; they pass.
	if _, err := healthpb.NewHealthClient(h.grpcConn(t)).Check(t.Context(), &healthpb.HealthCheckRequest{}); err != nil {
		t.Fatalf("grpc health through the host check: %v", err)
	}
}

func TestTokenFile(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	token, path, remove, err := api.NewTokenFile(dir)
	if err != nil {
		t.Fatal(err)
	}
	info, err := os.Stat(path)
	if err != nil || info.Mode().Perm() != 0o600 {
		t.Fatalf("token file mode = %v, %v", info.Mode(), err)
	}
	got, err := api.ReadTokenFile(path)
	if err != nil || got != token || len(token) < 26 { // 26 base32 characters: 130 bits

		t.Fatalf("ReadTokenFile = %q, %v (wrote %q)", got, err, token)
	}
	remove()
	if _, err := os.Stat(filepath.Dir(path)); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("token directory left behind: %v", err)
	}

	loose := filepath.Join(dir, "loose")
	if err := os.WriteFile(loose, []byte(token), 0o644); err != nil { //nolint:gosec // the point of the test
		t.Fatal(err)
	}
	if _, err := api.ReadTokenFile(loose); !errors.Is(err, vmre.ErrInvalidConfig) {
		t.Fatalf("world-readable token file: %v", err)
	}
	short := filepath.Join(dir, "short")
	if err := os.WriteFile(short, []byte("abc\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := api.ReadTokenFile(short); !errors.Is(err, vmre.ErrInvalidConfig) {
		t.Fatalf("short token: %v", err)
	}
}

// flushGate counts the flushes that reach the real response writer and
// holds the first one until released, so a test can queue changes while
// the watch handler is busy.
type flushGate struct {
	http.ResponseWriter
	flushes atomic.Int32
	first   chan struct{} // closed by the first Flush
	release chan struct{}
}

func (g *flushGate) Flush() {
	if g.flushes.Add(1) == 1 {
		close(g.first)
		<-g.release
	}
	g.ResponseWriter.(http.Flusher).Flush()
}

// Changes that pile up while a watcher is busy go out with one flush (one
// write on the connection), in order, over gRPC-Web/HTTP/1.1 and gRPC/h2c.
func TestWatchBatchesPendingChanges(t *testing.T) {
	t.Parallel()
	for _, proto := range []string{"grpcweb", "grpc"} {
		t.Run(proto, func(t *testing.T) {
			t.Parallel()
			h := start(t, nil)
			gate := &flushGate{first: make(chan struct{}), release: make(chan struct{})}
			wrapped := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				if strings.HasSuffix(r.URL.Path, "/WatchRuntimes") {
					gate.ResponseWriter = w
					w = gate
				}
				h.handler.ServeHTTP(w, r)
			})
			lis, err := net.Listen("tcp", "127.0.0.1:0")
			if err != nil {
				t.Fatal(err)
			}
			srv := server.NewHTTPServer(wrapped)
			go func() { _ = srv.Serve(lis) }()
			defer srv.Close()

			httpClient, opt := http.DefaultClient, connect.WithGRPCWeb()
			if proto == "grpc" {
				httpClient, opt = h2cClient(), connect.WithGRPC()
			}
			client := vmrev1connect.NewRuntimeServiceClient(httpClient, "http://"+lis.Addr().String(), opt)
			ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
			defer cancel()
			type opened struct {
				stream *connect.ServerStreamForClient[vmrev1.WatchRuntimesResponse]
				err    error
			}
			open := make(chan opened, 1)
			go func() { // the call returns with the response headers, which the gate holds
				stream, err := client.WatchRuntimes(ctx, &vmrev1.WatchRuntimesRequest{})
				open <- opened{stream, err}
			}()

			<-gate.first // the handler is flushing the snapshot
			addrs := []string{"127.0.0.1:50001", "127.0.0.1:50002", "127.0.0.1:50003"}
			for _, addr := range addrs {
				if _, err := h.engine.Attach(42, addr, "p"); err != nil {
					t.Fatal(err)
				}
			}
			close(gate.release)
			o := <-open
			if o.err != nil {
				t.Fatal(o.err)
			}
			stream := o.stream
			defer stream.Close()

			if !stream.Receive() || stream.Msg().GetSnapshot() == nil {
				t.Fatalf("no snapshot: %v", stream.Err())
			}
			for _, addr := range addrs {
				if !stream.Receive() {
					t.Fatalf("no change for %s: %v", addr, stream.Err())
				}
				if got := stream.Msg().GetRuntime().GetVmAddr(); got != addr {
					t.Fatalf("change for %s, want %s", got, addr)
				}
			}
			if n := gate.flushes.Load(); n != 2 {
				t.Fatalf("%d flushes for a snapshot and three waiting changes, want 2", n)
			}
		})
	}
}

// Many watchers on every protocol (gRPC-Web, Connect binary and JSON, gRPC
// over h2c) each get the same change, concurrently.
func TestWatchManyWatchersEveryProtocol(t *testing.T) {
	t.Parallel()
	h := start(t, nil)
	ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
	defer cancel()
	clients := []vmrev1connect.RuntimeServiceClient{
		h.client(connect.WithGRPCWeb()),
		h.client(), // Connect, binary
		h.client(connect.WithProtoJSON()),
		h.grpcClient(),
	}
	const perClient = 8
	var streams []*connect.ServerStreamForClient[vmrev1.WatchRuntimesResponse]
	for _, c := range clients {
		for range perClient {
			s, err := c.WatchRuntimes(ctx, &vmrev1.WatchRuntimesRequest{})
			if err != nil {
				t.Fatal(err)
			}
			defer s.Close()
			if !s.Receive() || s.Msg().GetSnapshot() == nil {
				t.Fatalf("no snapshot: %v", s.Err())
			}
			streams = append(streams, s)
		}
	}
	if _, err := h.engine.Attach(42, "127.0.0.1:50009", "p"); err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	got := make([]*vmrev1.WatchRuntimesResponse, len(streams))
	for i, s := range streams {
		wg.Go(func() {
			if !s.Receive() {
				t.Errorf("watcher %d: no change: %v", i, s.Err())
				return
			}
			got[i] = s.Msg()
			if s.Msg().GetRuntime().GetVmAddr() != "127.0.0.1:50009" || s.Msg().GetEvent().GetMessage() == "" || s.Msg().GetServerTime() == nil {
				t.Errorf("watcher %d: change %v", i, s.Msg())
			}
		})
	}
	wg.Wait()
	// The server encodes a change once for all binary watchers; every
	// protocol must still decode the same message.
	for i, m := range got {
		if m != nil && got[0] != nil && !proto.Equal(m, got[0]) {
			t.Errorf("watcher %d got %v, watcher 0 got %v", i, m, got[0])
		}
	}
}

// TestRequestGuard: a POST without the content type a procedure's
// protocols use gets a 415 that says what to send (unary and streaming
// procedures differ), and an endless body is answered resource_exhausted
// once the cap has been read, not read forever.
func TestRequestGuard(t *testing.T) {
	t.Parallel()
	h := start(t, nil)
	post := func(client *http.Client, procedure, contentType string, body io.Reader) (int, string) {
		t.Helper()
		ctx, cancel := context.WithTimeout(t.Context(), 20*time.Second)
		defer cancel()
		req, err := http.NewRequestWithContext(ctx, http.MethodPost, h.url+procedure, body)
		if err != nil {
			t.Fatal(err)
		}
		req.Header.Set("Content-Type", contentType)
		resp, err := client.Do(req)
		if err != nil {
			t.Fatalf("%s: %v", procedure, err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}
	for _, tt := range []struct {
		procedure, want string
	}{
		{vmrev1connect.RuntimeServiceListRuntimesProcedure, "send application/json"},
		{vmrev1connect.RuntimeServiceWatchRuntimesProcedure, "send application/connect+json"},
	} {
		code, body := post(http.DefaultClient, tt.procedure, "application/x-www-form-urlencoded", strings.NewReader("{}"))
		if code != http.StatusUnsupportedMediaType || !strings.Contains(body, `"code":"invalid_argument"`) || !strings.Contains(body, tt.want) {
			t.Errorf("%s, form content type: %d %s", tt.procedure, code, body)
		}
	}
	for name, client := range map[string]*http.Client{"HTTP/1.1": http.DefaultClient, "h2c": h2cClient()} {
		// The health check needs no token either.
		for _, procedure := range []string{vmrev1connect.RuntimeServiceListRuntimesProcedure, "/grpc.health.v1.Health/Check"} {
			code, body := post(client, procedure, "application/json", endless{})
			if code != http.StatusTooManyRequests || !strings.Contains(body, "resource_exhausted") {
				t.Errorf("%s %s, endless body: %d %s", name, procedure, code, body)
			}
		}
	}
	if code, body := post(http.DefaultClient, "/grpc.health.v1.Health/Check", "application/json", strings.NewReader("{}")); code != http.StatusOK || !strings.Contains(body, "SERVING") {
		t.Errorf("health check: %d %s", code, body)
	}
}

// endless is a request body that never ends.
type endless struct{}

func (endless) Read(p []byte) (int, error) {
	for i := range p {
		p[i] = ' '
	}
	return len(p), nil
}

// TestTailOutputDropsComeAfterTheirLines: a follower that falls behind
// drops the lines right after those it holds, and its batch may go out in
// several messages; the count must ride on the batch's last message, so
// that a client (the dashboard prints a "lines skipped" note) can place
// the gap. Checked from the sequence numbers: after a message with N
// dropped, the next line is N further on.
func TestTailOutputDropsComeAfterTheirLines(t *testing.T) {
	t.Parallel()
	const lineLen, count = 512 << 10, 40
	// A backlog of 4 lines of 512 KiB (each goes out in a message of its
	// own), the rest dropped.
	h := startEngine(t, engine.Config{OutputBytes: 64 << 20, WatchBuffer: 1}, func(c *api.Config) { c.SendTimeout = 10 * time.Minute })
	rt, err := h.engine.Launch(t.Context(), engine.Spec{Path: "/bin/vm"})
	if err != nil {
		t.Fatal(err)
	}
	// No deadline: 20 MiB through a -race grpc-go client has taken over
	// 20 s on a loaded machine; the test binary's -timeout bounds a hang.
	stream, err := h.grpcConn(t).NewStream(t.Context(), &grpc.StreamDesc{ServerStreams: true}, vmrev1connect.RuntimeServiceTailOutputProcedure)
	if err != nil {
		t.Fatal(err)
	}
	if err := stream.SendMsg(&vmrev1.TailOutputRequest{Id: rt.ID, Follow: true}); err != nil {
		t.Fatal(err)
	}
	if err := stream.CloseSend(); err != nil {
		t.Fatal(err)
	}
	if err := stream.RecvMsg(new(vmrev1.TailOutputResponse)); err != nil { // the empty initial tail
		t.Fatal(err)
	}
	out := h.launcher.output(0)
	for range count {
		out(&subprocess.Line{Stream: "stdout", Text: []byte(strings.Repeat("x", lineLen))})
	}
	var next, dropped, droppedAll uint64 = 1, 0, 0 // the next line expected, drops owed before it, all drops
	for next+dropped <= count {
		msg := new(vmrev1.TailOutputResponse)
		if err := stream.RecvMsg(msg); err != nil {
			t.Fatalf("after line %d: %v", next-1, err)
		}
		for _, l := range msg.GetLines() {
			if l.GetSeq() != next+dropped {
				t.Fatalf("line seq %d, want %d (%d dropped after line %d)", l.GetSeq(), next+dropped, dropped, next-1)
			}
			next, dropped = l.GetSeq()+1, 0
		}
		dropped += msg.GetDroppedLines()
		droppedAll += msg.GetDroppedLines()
	}
	if droppedAll == 0 {
		t.Fatal("no line was dropped: the test checked nothing")
	}
}

// TailOutput sends the parsed form as typed fields and filters by minimum
// level and stream, in the tail and in what follows.
func TestTailOutputParsedAndFiltered(t *testing.T) {
	t.Parallel()
	h := start(t, nil)
	rt, err := h.engine.Launch(t.Context(), engine.Spec{Path: "/bin/vm"})
	if err != nil {
		t.Fatal(err)
	}
	out := h.launcher.output(0)
	plugin := time.Date(2026, 12, 6, 21, 46, 25, 946e6, time.UTC)
	out(&subprocess.Line{Stream: "stderr", Level: zerolog.WarnLevel, Text: []byte("raw warn"), Message: []byte("warn"),
		Fields: []byte(`{"height": 12}`), Logger: []byte("X Chain"), Caller: []byte("vm.go:1"), PluginTime: plugin, Format: subprocess.LogZapConsole})
	out(&subprocess.Line{Stream: "stderr", Level: zerolog.InfoLevel, Text: []byte("info")})
	out(&subprocess.Line{Stream: "stdout", Level: zerolog.ErrorLevel, Text: []byte("stdout error")})

	ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
	defer cancel()
	tail, err := h.client().TailOutput(ctx, &vmrev1.TailOutputRequest{Id: rt.ID, Follow: true,
		MinLevel: vmrev1.LogLevel_LOG_LEVEL_WARN, Stream: vmrev1.OutputStream_OUTPUT_STREAM_STDERR})
	if err != nil {
		t.Fatal(err)
	}
	defer tail.Close()
	if !tail.Receive() {
		t.Fatal(tail.Err())
	}
	lines := tail.Msg().GetLines()
	if len(lines) != 1 {
		t.Fatalf("tail %v, want the stderr warn line only", lines)
	}
	l := lines[0]
	if l.GetLogLevel() != vmrev1.LogLevel_LOG_LEVEL_WARN || l.GetMessage() != "warn" || l.GetText() != "raw warn" ||
		l.GetFields().GetFields()["height"].GetNumberValue() != 12 || l.GetLogger() != "X Chain" || l.GetCaller() != "vm.go:1" ||
		!l.GetPluginTime().AsTime().Equal(plugin) || l.GetFormat() != "zap-console" {
		t.Errorf("line %v", l)
	}
	out(&subprocess.Line{Stream: "stderr", Level: zerolog.DebugLevel, Text: []byte("filtered")})
	out(&subprocess.Line{Stream: "stderr", Level: zerolog.ErrorLevel, Text: []byte("kept")})
	if !tail.Receive() {
		t.Fatal(tail.Err())
	}
	if got := tail.Msg().GetLines(); len(got) != 1 || got[0].GetText() != "kept" {
		t.Errorf("followed %v, want only the stderr error line", got)
	}
}
