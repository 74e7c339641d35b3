package xsvm

import (
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"

	"connectrpc.com/connect"
	vmrev1 "github.com/vmre/vmre/gen/vmre/v1"
	"github.com/vmre/vmre/gen/vmre/v1/vmrev1connect"
)

// TestRestartOnFailureBringsXSVMBack: under restart: on-failure, a killed
// xsvm process is launched again; the liveness probe reads xsvm's
// grpc.health.v1 and sees the new process SERVING; once that process hangs
// (SIGSTOP), its probes time out, the runtime turns unhealthy and runs
// again in a fresh process, which the probe sees SERVING too.
func TestRestartOnFailureBringsXSVMBack(t *testing.T) {
	t.Parallel()
	requireBinaries(t)
	config := filepath.Join(t.TempDir(), "vmre.yaml")
	// A 2 s probe timeout: xsvm answers in milliseconds, even on a loaded
	// machine, unless it is stopped. A 1 s grace covers xsvm's graceful
	// stop: the engine closes its probe's connection before the stop, so
	// grpc-go's GracefulStop has no client to wait for.
	yaml := fmt.Sprintf(`runtimes:
  - name: xsvm
    path: %q
    protocol_versions: [44]
    graceful_timeout: 1s
    restart:
      policy: on-failure
      initial_backoff: 100ms
    health:
      interval: 2s
      timeout: 2s
      failure_threshold: 2
`, xsvmBin)
	if err := os.WriteFile(config, []byte(yaml), 0o600); err != nil {
		t.Fatal(err)
	}
	p := startVMRE(t, "run", "--config", config, "--listen", "127.0.0.1:0", "--log-format", "json", "--log-level", "debug")
	api := p.waitLog(t, `"api listening"`, func(l logLine) bool { return l.str("message") == "api listening" })

	client := vmrev1connect.NewRuntimeServiceClient(http.DefaultClient, "http://"+api.str("addr"))
	stream, err := client.WatchRuntimes(testContext(t), &vmrev1.WatchRuntimesRequest{})
	if err != nil {
		t.Fatal(err)
	}
	defer stream.Close()
	runningOtherThan := func(pids ...int64) func(*vmrev1.Runtime) bool {
		return func(rt *vmrev1.Runtime) bool {
			return rt.GetName() == "xsvm" && rt.GetState() == vmrev1.RuntimeState_RUNTIME_STATE_RUNNING &&
				rt.GetPid() != 0 && !slices.Contains(pids, rt.GetPid())
		}
	}

	first := watchUntil(t, stream, "xsvm running", runningOtherThan())
	if err := syscall.Kill(int(first.GetPid()), syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	second := watchUntil(t, stream, "xsvm running again after the kill", runningOtherThan(first.GetPid()))
	if second.GetId() != first.GetId() || second.GetRestarts() != first.GetRestarts()+1 {
		t.Errorf("after the kill: id %q restarts %d; before: id %q restarts %d",
			second.GetId(), second.GetRestarts(), first.GetId(), first.GetRestarts())
	}

	// The probe's answers reach watchers with the resource samples.
	serving := func(pid int64) func(*vmrev1.Runtime) bool {
		return func(rt *vmrev1.Runtime) bool {
			return rt.GetPid() == pid && rt.GetHealth() == vmrev1.RuntimeHealth_RUNTIME_HEALTH_SERVING
		}
	}
	watchUntil(t, stream, "the restarted xsvm serving grpc.health.v1", serving(second.GetPid()))

	if err := syscall.Kill(int(second.GetPid()), syscall.SIGSTOP); err != nil {
		t.Fatal(err)
	}
	sick := watchUntil(t, stream, "the stopped xsvm unhealthy", func(rt *vmrev1.Runtime) bool {
		return rt.GetState() == vmrev1.RuntimeState_RUNTIME_STATE_UNHEALTHY
	})
	if sick.GetPid() != second.GetPid() || sick.GetHealth() != vmrev1.RuntimeHealth_RUNTIME_HEALTH_FAILING ||
		!strings.Contains(sick.GetLastError(), "liveness probe failed 2 times in a row") {
		t.Errorf("unhealthy: pid %d (stopped: %d) health %s last error %q",
			sick.GetPid(), second.GetPid(), sick.GetHealth(), sick.GetLastError())
	}
	third := watchUntil(t, stream, "xsvm running again after its liveness failed", runningOtherThan(first.GetPid(), second.GetPid()))
	if third.GetRestarts() != second.GetRestarts()+1 {
		t.Errorf("restarts %d after the liveness restart, %d before", third.GetRestarts(), second.GetRestarts())
	}
	watchUntil(t, stream, "the xsvm restarted by liveness serving grpc.health.v1", serving(third.GetPid()))

	p.signal(t, syscall.SIGTERM)
	if code := p.wait(t); code != 0 {
		t.Errorf("vmre exit code %d, want 0", code)
	}
}

// watchUntil reads the watch stream until a runtime matches and returns it.
func watchUntil(t *testing.T, stream *connect.ServerStreamForClient[vmrev1.WatchRuntimesResponse], what string, match func(*vmrev1.Runtime) bool) *vmrev1.Runtime {
	t.Helper()
	for stream.Receive() {
		msg := stream.Msg()
		rts := msg.GetSnapshot().GetRuntimes()
		if rt := msg.GetRuntime(); rt != nil {
			rts = append(rts, rt)
		}
		for _, rt := range rts {
			t.Logf("watch: %s %s pid %d health %s restarts %d", rt.GetName(), rt.GetState(), rt.GetPid(), rt.GetHealth(), rt.GetRestarts())
			if match(rt) {
				return rt
			}
		}
	}
	t.Fatalf("watch ended before %s: %v", what, stream.Err())
	return nil
}
