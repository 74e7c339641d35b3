package e2e

import (
	"bufio"
	"context"
	"crypto/rand"
	"crypto/tls"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"connectrpc.com/connect"
	vmreroot "github.com/vmre/vmre"
	vmrev1 "github.com/vmre/vmre/gen/vmre/v1"
	"github.com/vmre/vmre/gen/vmre/v1/vmrev1connect"
	"github.com/vmre/vmre/internal/tlstest"
	"golang.org/x/sys/unix"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/status"
)

// netHost is a network namespace the test made: a host of its own, joined
// to the other by a veth pair.
type netHost struct {
	name string   // the namespace, as `ip netns` names it
	ip   string   // its address on the veth link
	ns   *os.File // /run/netns/NAME, open for setns
}

// newHostPair makes two network namespaces joined by a veth pair,
// 10.231.0.1/24 (engine) and 10.231.0.2/24 (vm), and deletes them when the
// test ends (which also deletes the veth pair). The addresses exist only
// inside the namespaces, so they cannot clash with the machine's.
func newHostPair(t *testing.T, ip string) (engine, vm *netHost) {
	t.Helper()
	prefix := "vmre-e2e-" + strconv.Itoa(os.Getpid())
	sh := func(args ...string) {
		t.Helper()
		if out, err := exec.Command(ip, args...).CombinedOutput(); err != nil {
			t.Fatalf("ip %s: %v\n%s", strings.Join(args, " "), err, out)
		}
	}
	engine = &netHost{name: prefix + "-engine", ip: "10.231.0.1"}
	vm = &netHost{name: prefix + "-vm", ip: "10.231.0.2"}
	for _, h := range []*netHost{engine, vm} {
		sh("netns", "add", h.name)
		t.Cleanup(func() {
			if h.ns != nil {
				_ = h.ns.Close()
			}
			if out, err := exec.Command(ip, "netns", "delete", h.name).CombinedOutput(); err != nil {
				t.Errorf("ip netns delete %s: %v\n%s", h.name, err, out)
			}
		})
	}
	// Created inside the namespaces, so no interface name is ever taken
	// in the machine's own namespace.
	sh("link", "add", "veth0", "netns", engine.name, "type", "veth", "peer", "name", "veth0", "netns", vm.name)
	for _, h := range []*netHost{engine, vm} {
		sh("-n", h.name, "addr", "add", h.ip+"/24", "dev", "veth0")
		sh("-n", h.name, "link", "set", "veth0", "up")
		sh("-n", h.name, "link", "set", "lo", "up")
		f, err := os.Open("/run/netns/" + h.name)
		if err != nil {
			t.Fatal(err)
		}
		h.ns = f
	}
	return engine, vm
}

// dial opens a connection from inside h, so that the test (in the
// machine's namespace) can reach servers that listen only there. The
// socket is created on a thread moved into h's namespace; a socket keeps
// its namespace for life, whichever thread uses it later.
func (h *netHost) dial(ctx context.Context, network, addr string) (net.Conn, error) {
	type result struct {
		conn net.Conn
		err  error
	}
	done := make(chan result, 1)
	go func() {
		// Never unlocked: Go ends a thread whose goroutine returns while
		// locked, so no other goroutine ever runs in h's namespace.
		runtime.LockOSThread()
		if err := unix.Setns(int(h.ns.Fd()), unix.CLONE_NEWNET); err != nil {
			done <- result{nil, fmt.Errorf("setns %s: %w", h.name, err)}
			return
		}
		var d net.Dialer
		conn, err := d.DialContext(ctx, network, addr)
		done <- result{conn, err}
	}()
	r := <-done
	return r.conn, r.err
}

// httpClient speaks HTTP/2 over TLS with cfg from inside h.
func (h *netHost) httpClient(cfg *tls.Config) *http.Client {
	var p http.Protocols
	p.SetHTTP2(true)
	return &http.Client{Transport: &http.Transport{Protocols: &p, DialContext: h.dial, TLSClientConfig: cfg}}
}

// netProc is a process running in a namespace, whose stdout lines the
// test reads. It is killed (by its pid) when the test ends.
type netProc struct {
	t      *testing.T
	name   string
	cmd    *exec.Cmd
	lines  chan string // stdout (the few lines these processes print), closed at EOF
	waited chan struct{}
	err    error // from Wait, valid once waited is closed
}

// start runs bin with args inside h (`ip netns exec`, which execs bin
// under the same pid), with extra environment variables.
func (h *netHost) start(t *testing.T, ip, name string, env []string, bin string, args ...string) *netProc {
	t.Helper()
	cmd := exec.Command(ip, append([]string{"netns", "exec", h.name, bin}, args...)...)
	cmd.Env = append(os.Environ(), env...)
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stderr = &testLogWriter{t: t, prefix: name + " stderr: "}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	p := &netProc{t: t, name: name, cmd: cmd, lines: make(chan string, 4096), waited: make(chan struct{})}
	go func() {
		defer close(p.lines)
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			t.Logf("%s stdout: %s", name, sc.Text())
			p.lines <- sc.Text()
		}
		_, _ = io.Copy(io.Discard, stdout)
	}()
	go func() {
		p.err = cmd.Wait()
		close(p.waited)
	}()
	t.Cleanup(p.kill)
	return p
}

// line waits for a stdout line starting with prefix and returns the rest.
func (p *netProc) line(prefix string) string {
	p.t.Helper()
	timeout := time.After(60 * time.Second) // a bound for a hung test, not a timing assertion
	for {
		select {
		case l, ok := <-p.lines:
			if !ok {
				p.t.Fatalf("%s ended before printing %q", p.name, prefix)
			}
			if rest, found := strings.CutPrefix(strings.TrimSpace(l), prefix); found {
				return strings.TrimSpace(rest)
			}
		case <-timeout:
			p.t.Fatalf("%s printed no %q", p.name, prefix)
		}
	}
}

// kill SIGKILLs the process by its pid, unless it has ended, and reaps it.
func (p *netProc) kill() {
	select {
	case <-p.waited:
		return
	default:
	}
	_ = p.cmd.Process.Kill()
	<-p.waited
}

// terminate sends SIGTERM and waits for the exit; it fails the test unless
// the process exits 0 within 30 s.
func (p *netProc) terminate() {
	p.t.Helper()
	_ = p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-p.waited:
	case <-time.After(30 * time.Second): // a bound for a hung process
		p.kill()
		p.t.Errorf("%s did not exit within 30 s of SIGTERM", p.name)
		return
	}
	if p.err != nil {
		p.t.Errorf("%s exited with %v after SIGTERM, want status 0", p.name, p.err)
	}
}

// TestTwoHosts runs `vmre run --attach` on one host and an avalanchego-style
// VM (a grpc-go server with grpc.health.v1, kept attached by vmre's client)
// on another: two network namespaces joined by a veth pair. It checks that
// the VM attaches over TLS with its client certificate and the token, that
// callers without a trusted certificate or the token are refused, that
// killing the VM makes the engine call it lost within its probe's interval
// times threshold, that the restarted VM attaches again under the same name
// and id, that after an engine restart the running VM registers again on
// its own, and that the engine's per-runtime grpc.health.v1 answer follows
// each step.
func TestTwoHosts(t *testing.T) {
	t.Parallel()
	if os.Geteuid() != 0 {
		t.Skip("two hosts: creating network namespaces and a veth pair needs root (CI runs as root)")
	}
	ip := requireTool(t, "ip")
	if buildErr != nil {
		t.Fatal(buildErr)
	}
	engineHost, vmHost := newHostPair(t, ip)

	// One CA for the engine's certificate and its clients': the VM and
	// the orchestrator. A stranger's certificate comes from another CA.
	dir := t.TempDir()
	subdir := func(name string) string {
		d := filepath.Join(dir, name)
		if err := os.Mkdir(d, 0o700); err != nil {
			t.Fatal(err)
		}
		return d
	}
	ca := tlstest.NewCA(t, "vmre e2e")
	caPath := ca.WriteCA(t, filepath.Join(dir, "ca.pem"))
	engineCert, engineKey := ca.Issue(t, engineHost.ip).Write(t, subdir("engine"))
	vmCert, vmKey := ca.Issue(t, vmHost.ip).Write(t, subdir("vm"))
	orchestrator := ca.Issue(t, "orchestrator")
	stranger := tlstest.NewCA(t, "stranger").Issue(t, "stranger")
	tlsWith := func(certs ...tls.Certificate) *tls.Config {
		return &tls.Config{RootCAs: ca.Pool(), Certificates: certs, MinVersion: tls.VersionTLS12}
	}
	attachToken := rand.Text()
	tokenPath := filepath.Join(dir, "attach-token")
	if err := os.WriteFile(tokenPath, []byte(attachToken+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}

	const (
		interval  = 300 * time.Millisecond
		timeout   = 200 * time.Millisecond
		threshold = 3
		refresh   = 500 * time.Millisecond // the VM's re-registering handshakes
		name      = "subnet-a"
	)
	apiAddr := net.JoinHostPort(engineHost.ip, "9660")
	attachAddr := net.JoinHostPort(engineHost.ip, "9661")
	startEngine := func(label string) *netProc {
		p := engineHost.start(t, ip, label, nil, vmreBin, "run", "--attach", "--log-format", "json",
			"--listen", apiAddr, "--attach-listen", attachAddr,
			"--attach-health-interval", interval.String(), "--attach-health-timeout", timeout.String(),
			"--attach-health-threshold", strconv.Itoa(threshold),
			"--tls-cert", engineCert, "--tls-key", engineKey, "--client-ca", caPath, "--attach-token-file", tokenPath)
		p.line("attach:")
		return p
	}
	vmre := startEngine("vmre")

	ctx, cancel := context.WithTimeout(t.Context(), 3*time.Minute)
	defer cancel()
	// The orchestrator's view of the engine, from the engine's host: a
	// grpc-go health client and a watch of the runtimes.
	conn, err := grpc.NewClient("passthrough:///"+apiAddr,
		grpc.WithContextDialer(func(ctx context.Context, addr string) (net.Conn, error) { return engineHost.dial(ctx, "tcp", addr) }),
		grpc.WithTransportCredentials(credentials.NewTLS(tlsWith(orchestrator.Cert))))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	health := healthpb.NewHealthClient(conn)
	healthOf := func(service string) string {
		t.Helper()
		// WaitForReady: across the engine's restart the connection
		// comes back on its own.
		resp, err := health.Check(ctx, &healthpb.HealthCheckRequest{Service: service}, grpc.WaitForReady(true))
		if err != nil {
			return status.Code(err).String()
		}
		return resp.GetStatus().String()
	}
	api := vmrev1connect.NewRuntimeServiceClient(engineHost.httpClient(tlsWith(orchestrator.Cert)), "https://"+apiAddr, connect.WithGRPC())
	var watch *connect.ServerStreamForClient[vmrev1.WatchRuntimesResponse]
	watchEngine := func() {
		t.Helper()
		if watch != nil {
			_ = watch.Close()
		}
		if watch, err = api.WatchRuntimes(ctx, &vmrev1.WatchRuntimesRequest{}); err != nil {
			t.Fatal(err)
		}
	}
	watchEngine()
	defer func() { _ = watch.Close() }()
	// until reads the watch until runtime name is in state want, and
	// returns it with the time of the event that put it there (the
	// engine's clock).
	until := func(want vmrev1.RuntimeState) (*vmrev1.Runtime, time.Time) {
		t.Helper()
		for watch.Receive() {
			msg := watch.Msg()
			rts := msg.GetSnapshot().GetRuntimes()
			if rt := msg.GetRuntime(); rt != nil {
				rts = []*vmrev1.Runtime{rt}
			}
			for _, rt := range rts {
				if rt.GetName() == name && rt.GetState() == want {
					return rt, msg.GetEvent().GetTime().AsTime()
				}
			}
		}
		t.Fatalf("watch ended before %s was %s: %v", name, want, watch.Err())
		return nil, time.Time{}
	}
	if got := healthOf(name); got != "NotFound" {
		t.Fatalf("health of %s before it attached: %s, want NotFound", name, got)
	}

	// The VM, on its own host, attaches across the link over TLS, with
	// its client certificate and the token, under its name.
	startVM := func(label string) (*netProc, string) {
		p := vmHost.start(t, ip, label, []string{
			vmreroot.EngineAddressKey + "=" + attachAddr, vmreroot.HandshakeTokenKey + "=" + attachToken,
			vmreroot.EngineCAKey + "=" + caPath, vmreroot.EngineCertKey + "=" + vmCert, vmreroot.EngineKeyKey + "=" + vmKey,
			vmreroot.RuntimeNameKey + "=" + name,
			netVMChild + "=1", netVMListen + "=" + net.JoinHostPort(vmHost.ip, "0"), netVMRefresh + "=" + refresh.String(),
		}, os.Args[0])
		addr := p.line("vm listening ")
		p.line("vm attached")
		return p, addr
	}
	vm, vmAddr := startVM("vm")
	first, _ := until(vmrev1.RuntimeState_RUNTIME_STATE_ATTACHED)
	if first.GetVmAddr() != vmAddr {
		t.Errorf("attached with address %s, want %s", first.GetVmAddr(), vmAddr)
	}
	if host, _, _ := net.SplitHostPort(first.GetPeerAddr()); host != vmHost.ip {
		t.Errorf("attached from %s, want the VM host %s", first.GetPeerAddr(), vmHost.ip)
	}
	if got := healthOf(name); got != "SERVING" {
		t.Fatalf("health of the attached VM: %s", got)
	}

	// Callers on the VM's host without a client certificate the engine
	// trusts are refused by TLS, at the attach endpoint and the API port;
	// with one but without the token, by the token check.
	handshake := func(c *tls.Config) (int, error) {
		resp, err := vmHost.httpClient(c).Post("https://"+attachAddr+"/vm.runtime.Runtime/Initialize", "application/json",
			strings.NewReader(`{"protocolVersion":42,"addr":"`+net.JoinHostPort(vmHost.ip, "1")+`"}`))
		if err != nil {
			return 0, err
		}
		_ = resp.Body.Close()
		return resp.StatusCode, nil
	}
	for _, tt := range []struct {
		name string
		cfg  *tls.Config
	}{
		{"no client certificate", tlsWith()},
		{"a certificate of another CA", tlsWith(stranger.Cert)},
	} {
		if code, err := handshake(tt.cfg); err == nil {
			t.Errorf("handshake with %s: HTTP %d, want a TLS refusal", tt.name, code)
		}
		c := vmrev1connect.NewRuntimeServiceClient(vmHost.httpClient(tt.cfg), "https://"+apiAddr, connect.WithGRPC())
		if _, err := c.ListRuntimes(ctx, &vmrev1.ListRuntimesRequest{}); err == nil {
			t.Errorf("API call with %s succeeded, want a TLS refusal", tt.name)
		}
	}
	if code, err := handshake(tlsWith(orchestrator.Cert)); err != nil || code != http.StatusUnauthorized {
		t.Errorf("handshake without the token: HTTP %d, %v; want 401", code, err)
	}
	remoteAPI := vmrev1connect.NewRuntimeServiceClient(vmHost.httpClient(tlsWith(orchestrator.Cert)), "https://"+apiAddr, connect.WithGRPC())
	if _, err := remoteAPI.StopRuntime(ctx, &vmrev1.StopRuntimeRequest{Id: first.GetId()}); connect.CodeOf(err) != connect.CodeUnauthenticated {
		t.Errorf("StopRuntime without the API token: %v, want unauthenticated", err)
	}

	// Killed, the VM is found lost by the engine's probe: the first probe
	// after the kill fails, and the threshold-th failure in a row, about
	// interval x threshold later, makes it lost.
	killed := time.Now()
	vm.kill()
	_, lostAt := until(vmrev1.RuntimeState_RUNTIME_STATE_LOST)
	took := lostAt.Sub(killed)
	t.Logf("lost %v after the kill (interval %v x threshold %d)", took, interval, threshold)
	if low := (threshold - 1) * interval; took < low {
		t.Errorf("lost %v after the kill: before %d probes could fail", took, threshold)
	}
	// Generous: the probes' timers and the machine may run late.
	if high := threshold*(interval+timeout) + 5*time.Second; took > high {
		t.Errorf("lost %v after the kill, want within interval x threshold (%v x %d)", took, interval, threshold)
	}
	if got := healthOf(name); got != "NOT_SERVING" {
		t.Errorf("health of the lost VM: %s, want NOT_SERVING", got)
	}

	// Restarted, on another port, the VM attaches again under its name:
	// the same runtime, a new incarnation.
	vm, vmAddr = startVM("vm (restarted)")
	again, _ := until(vmrev1.RuntimeState_RUNTIME_STATE_ATTACHED)
	if again.GetId() != first.GetId() || again.GetVmAddr() != vmAddr || !again.GetStartedAt().AsTime().After(first.GetStartedAt().AsTime()) {
		t.Errorf("re-attached as %s at %s started %v, want id %s at %s started after %v", again.GetId(), again.GetVmAddr(),
			again.GetStartedAt().AsTime(), first.GetId(), vmAddr, first.GetStartedAt().AsTime())
	}
	if got := healthOf(name); got != "SERVING" {
		t.Errorf("health of the re-attached VM: %s, want SERVING", got)
	}

	// The engine restarts and forgets it; the running VM registers again
	// on its own within its refresh interval.
	vmre.terminate()
	vmre = startEngine("vmre (restarted)")
	watchEngine()
	until(vmrev1.RuntimeState_RUNTIME_STATE_ATTACHED)
	if got := healthOf(name); got != "SERVING" {
		t.Errorf("health of the VM after the engine's restart: %s, want SERVING", got)
	}

	vm.terminate()
	vmre.terminate()
}
