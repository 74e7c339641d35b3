// Package avalanchego_test links avalanchego v1.15.0's handshake code
// (proto/pb/vm/runtime, vms/rpcchainvm and its runtime/subprocess) into one
// program with vmre's client, subprocess, server, engine and api packages,
// and performs real handshakes both ways: vmre's engine launches a plugin
// built on avalanchego's rpcchainvm.Serve, and avalanchego's
// subprocess.Bootstrap launches a plugin that handshakes with vmre's client.
// The plugins are this test binary, re-executed in a child mode.
//
// The program must start with protobuf-go's default registration-conflict
// policy: avalanchego's generated code registers vm/runtime/runtime.proto,
// and vmre's packages must not.
package avalanchego_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"os/signal"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	avapb "github.com/ava-labs/avalanchego/proto/pb/vm/runtime"
	"github.com/ava-labs/avalanchego/snow/engine/snowman/block"
	"github.com/ava-labs/avalanchego/utils/logging"
	"github.com/ava-labs/avalanchego/version"
	"github.com/ava-labs/avalanchego/vms/rpcchainvm"
	"github.com/ava-labs/avalanchego/vms/rpcchainvm/grpcutils"
	avaruntime "github.com/ava-labs/avalanchego/vms/rpcchainvm/runtime"
	avasub "github.com/ava-labs/avalanchego/vms/rpcchainvm/runtime/subprocess"
	"github.com/rs/zerolog"
	"github.com/vmre/vmre"
	"github.com/vmre/vmre/api"
	"github.com/vmre/vmre/client"
	"github.com/vmre/vmre/engine"
	"github.com/vmre/vmre/server"
	"github.com/vmre/vmre/subprocess"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/metadata"
	reflectionv1 "google.golang.org/grpc/reflection/grpc_reflection_v1"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protodesc"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/reflect/protoregistry"
	"google.golang.org/protobuf/types/descriptorpb"
)

// protocolVersion is the version avalanchego v1.15.0's engine and plugins
// speak.
const protocolVersion = uint32(version.RPCChainVMProtocol)

// childModeKey selects what a re-executed test binary does.
const childModeKey = "VMRE_E2E_AVALANCHEGO_CHILD"

// Child modes.
const (
	// childRPCChainVM serves an empty VM with avalanchego's rpcchainvm.Serve,
	// which handshakes through avalanchego's gruntime client.
	childRPCChainVM = "rpcchainvm"
	// childVmreClient handshakes with vmre's client.Handshake, serves
	// grpc.health on the address it announced, and exits 0 on SIGTERM.
	childVmreClient = "vmre-client"
	// childVmreClientOld is childVmreClient announcing the protocol version
	// before avalanchego's: it prints the sentinels its error matched and
	// exits 3.
	childVmreClientOld = "vmre-client-old"
)

func TestMain(m *testing.M) {
	switch mode := os.Getenv(childModeKey); mode {
	case "":
		os.Exit(m.Run())
	case childRPCChainVM:
		if err := rpcchainvm.Serve(context.Background(), emptyVM{}); err != nil {
			fmt.Fprintln(os.Stderr, "rpcchainvm.Serve:", err)
			os.Exit(1)
		}
		os.Exit(0)
	case childVmreClient:
		os.Exit(vmreClientPlugin(protocolVersion))
	case childVmreClientOld:
		os.Exit(vmreClientPlugin(protocolVersion - 1))
	default:
		fmt.Fprintln(os.Stderr, "unknown child mode", mode)
		os.Exit(2)
	}
}

// emptyVM implements block.ChainVM by embedding it; no engine calls a VM
// method, and rpcchainvm's Shutdown handler does not reach an uninitialized
// VM.
type emptyVM struct{ block.ChainVM }

// vmreClientPlugin is a plugin whose handshake is vmre's client: it reads
// AVALANCHE_VM_RUNTIME_ENGINE_ADDR as avalanchego's Bootstrap sets it.
func vmreClientPlugin(announce uint32) int {
	term := make(chan os.Signal, 1)
	signal.Notify(term, syscall.SIGTERM)
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		fmt.Fprintln(os.Stderr, "listen:", err)
		return 1
	}
	err = client.Handshake(context.Background(), announce, lis.Addr().String())
	if announce != protocolVersion {
		fmt.Fprintf(os.Stderr, "handshake error: handshake_failed=%t mismatch=%t: %v\n",
			errors.Is(err, vmre.ErrHandshakeFailed), errors.Is(err, vmre.ErrProtocolVersionMismatch), err)
		return 3
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "handshake:", err)
		return 1
	}
	srv := grpc.NewServer()
	healthpb.RegisterHealthServer(srv, healthServer{})
	go func() { _ = srv.Serve(lis) }()
	<-term
	srv.Stop()
	return 0
}

type healthServer struct {
	healthpb.UnimplementedHealthServer
}

func (healthServer) Check(context.Context, *healthpb.HealthCheckRequest) (*healthpb.HealthCheckResponse, error) {
	return &healthpb.HealthCheckResponse{Status: healthpb.HealthCheckResponse_SERVING}, nil
}

// childCmd returns a command that re-executes this test binary in mode,
// with the environment of the test.
func childCmd(mode string) *exec.Cmd {
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), childModeKey+"="+mode)
	return cmd
}

// TestRegistryIsAvalanchegos checks the premise of the whole module: this
// program started with the default conflict policy, and the global
// registry's vm/runtime/runtime.proto is avalanchego's.
func TestRegistryIsAvalanchegos(t *testing.T) {
	t.Parallel()
	if v, ok := os.LookupEnv("GOLANG_PROTOBUF_REGISTRATION_CONFLICT"); ok {
		t.Fatalf("GOLANG_PROTOBUF_REGISTRATION_CONFLICT=%q is set: this test must run without it", v)
	}
	fd, err := protoregistry.GlobalFiles.FindFileByPath("vm/runtime/runtime.proto")
	if err != nil {
		t.Fatalf("find vm/runtime/runtime.proto: %v", err)
	}
	if fd != avapb.File_vm_runtime_runtime_proto {
		t.Fatalf("vm/runtime/runtime.proto is registered from %q, want avalanchego's", fd.Options())
	}
	protoregistry.GlobalFiles.RangeFiles(func(fd protoreflect.FileDescriptor) bool {
		if fd.Package() == "vm.runtime" && fd != avapb.File_vm_runtime_runtime_proto {
			t.Errorf("%s registers package vm.runtime too", fd.Path())
		}
		return true
	})
}

// TestEngineLaunchesRPCChainVMPlugin: vmre's engine launches a plugin built
// on avalanchego's rpcchainvm.Serve, which handshakes with avalanchego's own
// client code; the VM it announced answers, and the engine stops it
// gracefully through /vm.VM/Shutdown.
func TestEngineLaunchesRPCChainVMPlugin(t *testing.T) {
	t.Parallel()
	eng, err := engine.New(engine.Config{
		Launcher: engine.NewSubprocessLauncher(subprocess.Config{
			Log:              zerolog.New(zerolog.NewTestWriter(t)),
			AcceptedVersions: []uint32{protocolVersion},
			HandshakeTimeout: time.Minute, // a loaded machine; the handshake itself takes milliseconds
			VMShutdown:       true,
		}, func(engine.Spec) (*exec.Cmd, error) { return childCmd(childRPCChainVM), nil }),
		Log: zerolog.New(zerolog.NewTestWriter(t)),
	})
	if err != nil {
		t.Fatalf("engine.New: %v", err)
	}
	t.Cleanup(func() { eng.Close(context.Background()) })

	rt, err := eng.Launch(t.Context(), engine.Spec{Name: "rpcchainvm", Path: os.Args[0]})
	if err != nil {
		t.Fatalf("Launch: %v", err)
	}
	if rt.State != engine.StateRunning || rt.ProtocolVersion != protocolVersion {
		t.Fatalf("launched runtime: state %v, protocol version %d; want running, %d", rt.State, rt.ProtocolVersion, protocolVersion)
	}
	checkHealth(t, rt.VMAddr)

	stopped, err := eng.Stop(t.Context(), rt.ID)
	if err != nil {
		t.Fatalf("Stop: %v", err)
	}
	if stopped.State != engine.StateExited || stopped.Exit == nil || stopped.Exit.Code != 0 {
		t.Fatalf("stopped runtime: state %v, exit %+v; want exited with code 0 (a graceful stop)", stopped.State, stopped.Exit)
	}
}

// TestBootstrapLaunchesVmreClientPlugin: avalanchego's subprocess.Bootstrap
// launches a plugin that handshakes with vmre's client over gRPC; the VM
// it announced answers, and avalanchego's stopper stops it.
func TestBootstrapLaunchesVmreClientPlugin(t *testing.T) {
	t.Parallel()
	out := &lines{}
	status, stopper := bootstrap(t, childVmreClient, out)
	checkHealth(t, status.Addr)
	stopper.Stop(t.Context())
	if status.Pid <= 0 {
		t.Errorf("status pid %d", status.Pid)
	}
}

// TestBootstrapRefusesOldVmreClient: avalanchego's engine refuses a
// version it does not speak, and vmre's client classifies the refusal,
// which grpc-go sends as an unknown status, as a version mismatch.
func TestBootstrapRefusesOldVmreClient(t *testing.T) {
	t.Parallel()
	out := &lines{}
	lis, err := grpcutils.NewListener()
	if err != nil {
		t.Fatal(err)
	}
	cmd := avasub.NewCmd(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), childModeKey+"="+childVmreClientOld)
	_, _, err = avasub.Bootstrap(t.Context(), lis, cmd, &avasub.Config{
		Stdout: out, Stderr: out, Log: logging.NoLog{}, HandshakeTimeout: time.Minute,
	})
	if !errors.Is(err, avaruntime.ErrProtocolVersionMismatch) {
		t.Fatalf("Bootstrap: %v; want avalanchego's protocol version mismatch", err)
	}
	// Bootstrap stops the child once the handshake failed; it printed its
	// verdict before it answered, as its handshake returned first.
	line := out.wait(t, "handshake error:")
	if !strings.Contains(line, "handshake_failed=true mismatch=true") {
		t.Fatalf("vmre client's verdict: %q; want both sentinels matched", line)
	}
}

// bootstrap launches the child in mode with avalanchego's Bootstrap, as its
// rpcchainvm factory does, and stops it when the test ends.
func bootstrap(t *testing.T, mode string, out io.Writer) (*avasub.Status, avaruntime.Stopper) {
	t.Helper()
	lis, err := grpcutils.NewListener()
	if err != nil {
		t.Fatal(err)
	}
	cmd := avasub.NewCmd(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), childModeKey+"="+mode)
	status, stopper, err := avasub.Bootstrap(t.Context(), lis, cmd, &avasub.Config{
		Stdout: out, Stderr: out, Log: logging.NoLog{}, HandshakeTimeout: time.Minute,
	})
	if err != nil {
		t.Fatalf("Bootstrap: %v (output: %s)", err, out)
	}
	t.Cleanup(func() { stopper.Stop(context.Background()) })
	return status, stopper
}

// TestReflectionDescribesTheFrozenContract: the API port and the attach
// endpoint describe vm.runtime.Runtime through server reflection with the
// very descriptor avalanchego generated from the same file (less options),
// and avalanchego's generated grpc-go client handshakes with the attach
// endpoint.
func TestReflectionDescribesTheFrozenContract(t *testing.T) {
	t.Parallel()
	eng, err := engine.New(engine.Config{AcceptedVersions: []uint32{protocolVersion}, Log: zerolog.New(zerolog.NewTestWriter(t))})
	if err != nil {
		t.Fatalf("engine.New: %v", err)
	}
	t.Cleanup(func() { eng.Close(context.Background()) })
	const token = "e2e-attach-token"
	attach, err := eng.ServeAttach("127.0.0.1:0", token)
	if err != nil {
		t.Fatalf("ServeAttach: %v", err)
	}
	t.Cleanup(func() { _ = attach.Close(context.Background()) })
	apiHandler, err := api.New(eng, api.Config{Token: "e2e-api-token"})
	if err != nil {
		t.Fatalf("api.New: %v", err)
	}
	apiAddr := serve(t, apiHandler)

	want := protodesc.ToFileDescriptorProto(avapb.File_vm_runtime_runtime_proto)
	want.Options = nil
	for name, addr := range map[string]string{"api": apiAddr, "attach": attach.Addr()} {
		got := reflectFile(t, addr, "vm.runtime.Runtime")
		if !proto.Equal(got, want) {
			t.Errorf("%s port describes vm.runtime.Runtime as\n%v\nwant avalanchego's\n%v", name, got, want)
		}
	}

	conn, err := grpc.NewClient("passthrough:///"+attach.Addr(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = conn.Close() })
	ctx := metadata.AppendToOutgoingContext(t.Context(), vmre.HandshakeTokenHeader, token)
	if _, err := avapb.NewRuntimeClient(conn).Initialize(ctx, &avapb.InitializeRequest{ProtocolVersion: protocolVersion, Addr: "127.0.0.1:9"}); err != nil {
		t.Fatalf("avalanchego's client against the attach endpoint: %v", err)
	}
	var attached []engine.Runtime
	for _, rt := range eng.List() {
		if rt.Attached {
			attached = append(attached, rt)
		}
	}
	if len(attached) != 1 || attached[0].VMAddr != "127.0.0.1:9" || attached[0].ProtocolVersion != protocolVersion {
		t.Fatalf("attached runtimes: %+v; want the one avalanchego's client announced", attached)
	}
}

// reflectFile asks addr's server reflection (v1) for the file that
// declares symbol.
func reflectFile(t *testing.T, addr, symbol string) *descriptorpb.FileDescriptorProto {
	t.Helper()
	conn, err := grpc.NewClient("passthrough:///"+addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	stream, err := reflectionv1.NewServerReflectionClient(conn).ServerReflectionInfo(t.Context())
	if err != nil {
		t.Fatalf("reflection on %s: %v", addr, err)
	}
	defer func() { _ = stream.CloseSend() }()
	req := &reflectionv1.ServerReflectionRequest{MessageRequest: &reflectionv1.ServerReflectionRequest_FileContainingSymbol{FileContainingSymbol: symbol}}
	if err := stream.Send(req); err != nil {
		t.Fatalf("reflection on %s: send: %v", addr, err)
	}
	res, err := stream.Recv()
	if err != nil {
		t.Fatalf("reflection on %s: receive: %v", addr, err)
	}
	if e := res.GetErrorResponse(); e != nil {
		t.Fatalf("reflection on %s: %s", addr, e.GetErrorMessage())
	}
	for _, raw := range res.GetFileDescriptorResponse().GetFileDescriptorProto() {
		fdp := new(descriptorpb.FileDescriptorProto)
		if err := proto.Unmarshal(raw, fdp); err != nil {
			t.Fatalf("reflection on %s: decode a file: %v", addr, err)
		}
		if fdp.GetName() == "vm/runtime/runtime.proto" {
			return fdp
		}
	}
	t.Fatalf("reflection on %s: no vm/runtime/runtime.proto for %s", addr, symbol)
	return nil
}

// checkHealth calls grpc.health.v1 on a plugin's VM address.
func checkHealth(t *testing.T, addr string) {
	t.Helper()
	conn, err := grpc.NewClient("passthrough:///"+addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	res, err := healthpb.NewHealthClient(conn).Check(t.Context(), &healthpb.HealthCheckRequest{})
	if err != nil {
		t.Fatalf("health of the VM at %s: %v", addr, err)
	}
	if res.GetStatus() != healthpb.HealthCheckResponse_SERVING {
		t.Fatalf("health of the VM at %s: %v", addr, res.GetStatus())
	}
}

// serve serves h over HTTP/1.1 and h2c on 127.0.0.1 until the test ends.
func serve(t *testing.T, h http.Handler) string {
	t.Helper()
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := server.NewHTTPServer(h)
	done := make(chan error, 1)
	go func() { done <- srv.Serve(lis) }()
	t.Cleanup(func() {
		_ = srv.Close()
		if err := <-done; !errors.Is(err, http.ErrServerClosed) {
			t.Errorf("serve: %v", err)
		}
	})
	return lis.Addr().String()
}

// lines collects a child's output; wait blocks until a line with a prefix
// arrives. It is safe for concurrent use.
type lines struct {
	mu   sync.Mutex
	buf  bytes.Buffer
	more chan struct{}
}

func (l *lines) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.buf.Write(p)
	if l.more != nil {
		close(l.more)
		l.more = nil
	}
	return len(p), nil
}

func (l *lines) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.buf.String()
}

func (l *lines) wait(t *testing.T, prefix string) string {
	t.Helper()
	// Generous: the line comes within milliseconds of the handshake.
	ctx, cancel := context.WithTimeout(t.Context(), 2*time.Minute)
	defer cancel()
	for {
		l.mu.Lock()
		for line := range strings.Lines(l.buf.String()) {
			if strings.HasPrefix(line, prefix) {
				l.mu.Unlock()
				return strings.TrimSpace(line)
			}
		}
		if l.more == nil {
			l.more = make(chan struct{})
		}
		more := l.more
		l.mu.Unlock()
		select {
		case <-more:
		case <-ctx.Done():
			t.Fatalf("no line %q in the output: %s", prefix, l)
		}
	}
}
