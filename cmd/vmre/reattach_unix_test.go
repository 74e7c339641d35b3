//go:build unix

package main

import (
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"syscall"
	"testing"

	"connectrpc.com/connect"
	"github.com/vmre/vmre"
	vmrev1 "github.com/vmre/vmre/gen/vmre/v1"
	"github.com/vmre/vmre/gen/vmre/v1/vmrev1connect"
	"github.com/vmre/vmre/internal/token"
)

// watchAPI opens a WatchRuntimes stream on the cleartext API at addr.
func watchAPI(t *testing.T, addr string) *connect.ServerStreamForClient[vmrev1.WatchRuntimesResponse] {
	t.Helper()
	var protocols http.Protocols
	protocols.SetUnencryptedHTTP2(true)
	tr := &http.Transport{Protocols: &protocols}
	t.Cleanup(tr.CloseIdleConnections)
	c := vmrev1connect.NewRuntimeServiceClient(&http.Client{Transport: tr}, "http://"+addr, connect.WithGRPC())
	stream, err := c.WatchRuntimes(t.Context(), &vmrev1.WatchRuntimesRequest{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = stream.Close() })
	return stream
}

// waitRuntime reads the watch until a runtime (in a snapshot or an
// update) satisfies ok, and returns it. The test's own deadline bounds it.
func waitRuntime(t *testing.T, stream *connect.ServerStreamForClient[vmrev1.WatchRuntimesResponse], what string, ok func(*vmrev1.Runtime) bool) *vmrev1.Runtime {
	t.Helper()
	for stream.Receive() {
		msg := stream.Msg()
		rts := msg.GetSnapshot().GetRuntimes()
		if rt := msg.GetRuntime(); rt != nil {
			rts = append(rts, rt)
		}
		for _, rt := range rts {
			if ok(rt) {
				return rt
			}
		}
	}
	t.Fatalf("watch ended before %s: %v", what, stream.Err())
	return nil
}

// startAttachingVM starts the example VM as a process of its own that
// keeps itself attached to the engine at engineAddr under name.
func startAttachingVM(t *testing.T, engineAddr, secret, name string) *exec.Cmd {
	t.Helper()
	cmd := exec.Command(os.Args[0], exampleVMCommand, "--keep-attached", "--attach-refresh", "200ms")
	cmd.Env = append(os.Environ(), vmre.EngineAddressKey+"="+engineAddr, vmre.HandshakeTokenKey+"="+secret,
		vmre.RuntimeNameKey+"="+name)
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
	})
	return cmd
}

// TestReattachOverUnixSocket: `vmre run --attach` on a unix socket, and a
// sidecar VM (a process of its own) that keeps itself attached under a
// name. Killed, the VM is lost after its probes fail; restarted, it is the
// same runtime (same id) in a new incarnation (a new start time). vmre
// killed too, its socket file is left behind: a new vmre replaces it, and
// the running VM registers with the new engine on its own.
func TestReattachOverUnixSocket(t *testing.T) {
	dir := t.TempDir()
	sock := filepath.Join(dir, "attach.sock")
	tokenPath := filepath.Join(dir, "attach-token")
	secret := token.New()
	writeSecret(t, tokenPath, secret)
	args := []string{"--attach", "--attach-listen", "unix:" + sock, "--attach-token-file", tokenPath,
		"--attach-health-interval", "100ms", "--attach-health-timeout", "5s", "--attach-health-threshold", "2"}
	p := startRun(t, args...)
	w := watchAPI(t, p.waitFor(t, "api listening", "").Addr)
	if got := p.waitFor(t, "attach endpoint listening", "").Addr; got != "unix:"+sock {
		t.Fatalf("attach endpoint at %q, want unix:%s", got, sock)
	}
	if info, err := os.Stat(sock); err != nil || info.Mode().Perm() != 0o600 {
		t.Fatalf("socket: %v, %v; want mode 0600", info, err)
	}

	const name = "subnet-a"
	named := func(state vmrev1.RuntimeState) func(*vmrev1.Runtime) bool {
		return func(rt *vmrev1.Runtime) bool { return rt.GetName() == name && rt.GetState() == state }
	}
	vm := startAttachingVM(t, "unix:"+sock, secret, name)
	first := waitRuntime(t, w, "the vm attached", named(vmrev1.RuntimeState_RUNTIME_STATE_ATTACHED))

	if err := vm.Process.Kill(); err != nil {
		t.Fatal(err)
	}
	_ = vm.Wait()
	lost := waitRuntime(t, w, "the killed vm lost", named(vmrev1.RuntimeState_RUNTIME_STATE_LOST))
	if lost.GetId() != first.GetId() {
		t.Fatalf("lost runtime %s, want %s", lost.GetId(), first.GetId())
	}

	startAttachingVM(t, "unix:"+sock, secret, name)
	again := waitRuntime(t, w, "the restarted vm attached", named(vmrev1.RuntimeState_RUNTIME_STATE_ATTACHED))
	if again.GetId() != first.GetId() {
		t.Fatalf("re-attached as %s, want the same id %s", again.GetId(), first.GetId())
	}
	if !again.GetStartedAt().AsTime().After(first.GetStartedAt().AsTime()) || again.GetVmAddr() == first.GetVmAddr() {
		t.Fatalf("re-attached: started %v at %s; want a new incarnation after %v at another address than %s",
			again.GetStartedAt().AsTime(), again.GetVmAddr(), first.GetStartedAt().AsTime(), first.GetVmAddr())
	}

	// vmre dies without cleaning up: its socket file stays.
	if err := p.cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	p.exitCode(t)
	if _, err := os.Lstat(sock); err != nil {
		t.Fatalf("socket file after SIGKILL: %v", err)
	}
	p2 := startRun(t, args...)
	w2 := watchAPI(t, p2.waitFor(t, "api listening", "").Addr)
	p2.waitFor(t, "attach endpoint listening", "")
	back := waitRuntime(t, w2, "the vm attached to the new engine", named(vmrev1.RuntimeState_RUNTIME_STATE_ATTACHED))
	if back.GetVmAddr() != again.GetVmAddr() {
		t.Fatalf("new engine sees %s, want the running vm at %s", back.GetVmAddr(), again.GetVmAddr())
	}
	p2.signal(t, syscall.SIGTERM)
	if code := p2.exitCode(t); code != exitOK {
		t.Fatalf("exit code %d", code)
	}
	if _, err := os.Lstat(sock); !os.IsNotExist(err) {
		t.Fatalf("socket file after a clean exit: %v, want it removed", err)
	}
}
