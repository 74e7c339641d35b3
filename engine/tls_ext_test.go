package engine_test

import (
	"crypto/tls"
	"errors"
	"io/fs"
	"net"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/vmre/vmre"
	"github.com/vmre/vmre/client"
	"github.com/vmre/vmre/engine"
	"github.com/vmre/vmre/internal/tlstest"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
)

// startTLSVMServer is a real grpc-go VM server with grpc.health over TLS,
// requiring client certificates from ca, as a VM on another host serves.
func startTLSVMServer(t *testing.T, ca *tlstest.CA) (*vmServer, *health.Server) {
	t.Helper()
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	creds := credentials.NewTLS(&tls.Config{
		Certificates: []tls.Certificate{ca.Issue(t, "127.0.0.1").Cert},
		ClientCAs:    ca.Pool(),
		ClientAuth:   tls.RequireAndVerifyClientCert,
	})
	vm := &vmServer{addr: lis.Addr().String(), srv: grpc.NewServer(grpc.Creds(creds)), health: health.NewServer()}
	healthpb.RegisterHealthServer(vm.srv, hangingHealth{vm.health, vm})
	go func() { _ = vm.srv.Serve(countingListener{lis, &vm.conns}) }()
	t.Cleanup(vm.srv.Stop)
	return vm, vm.health
}

// TestProbeOverTLS: an attached VM that announced tls://host:port is
// probed over TLS with the engine's VMTLS settings (its CA and client
// certificate); without the client certificate the probe fails and the
// VM is lost.
func TestProbeOverTLS(t *testing.T) {
	t.Parallel()
	ca := tlstest.NewCA(t, "test ca")
	engineCert := ca.Issue(t, "engine").Cert
	check := engine.HealthCheck{Interval: 10 * time.Second, Timeout: 5 * time.Second, FailureThreshold: 1}
	tests := []struct {
		name      string
		vmTLS     *tls.Config
		wantState engine.State
	}{
		{name: "ca and client certificate", vmTLS: &tls.Config{RootCAs: ca.Pool(), Certificates: []tls.Certificate{engineCert}}, wantState: engine.StateAttached},
		{name: "no client certificate", vmTLS: &tls.Config{RootCAs: ca.Pool()}, wantState: engine.StateLost},
		{name: "system roots", vmTLS: nil, wantState: engine.StateLost},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			vm, h := startTLSVMServer(t, ca)
			h.SetServingStatus("", healthpb.HealthCheckResponse_SERVING)
			clock := newFakeClock()
			e := newEngine(t, nil, func(c *engine.Config) {
				c.Clock, c.SampleInterval, c.AttachHealth, c.VMTLS = clock, -1, check, tt.vmTLS
			})
			w := watchFromSnapshot(t, e)
			rt, err := e.Attach(42, vmre.TLSAddrPrefix+vm.addr, "127.0.0.1:1")
			if err != nil {
				t.Fatal(err)
			}
			expectState(t, w, rt.ID, engine.StateAttached)
			if tt.wantState == engine.StateAttached {
				probeOnce(t, clock, check.Interval)
				got, _, err := e.Get(rt.ID)
				if err != nil || got.Health != engine.HealthServing || vm.checks.Load() != 1 {
					t.Fatalf("after a probe over tls: health %v, checks %d, err %v", got.Health, vm.checks.Load(), err)
				}
				return
			}
			clock.advance(check.Interval)
			expectState(t, w, rt.ID, engine.StateUnhealthy)
			expectState(t, w, rt.ID, engine.StateLost)
			if n := vm.checks.Load(); n != 0 {
				t.Fatalf("the vm answered %d checks to a client it should refuse", n)
			}
		})
	}
}

// TestAttachUnixSocket: the attach endpoint on a unix socket is created
// with mode 0600, takes handshakes from vmre's client at "unix:/path",
// replaces a stale socket file, refuses to replace anything else, and is
// removed at Close.
func TestAttachUnixSocket(t *testing.T) {
	t.Parallel()
	e := newEngine(t, nil, func(c *engine.Config) { c.SampleInterval = -1 })
	dir := t.TempDir()
	path := filepath.Join(dir, "attach.sock")

	// A stale socket: bound, then its listener closed without unlinking.
	stale, err := net.ListenUnix("unix", &net.UnixAddr{Name: path, Net: "unix"})
	if err != nil {
		t.Fatal(err)
	}
	stale.SetUnlinkOnClose(false)
	if err := stale.Close(); err != nil {
		t.Fatal(err)
	}
	secret := "attach-secret-0123456789"
	a, err := e.ServeAttachConfig(engine.AttachConfig{Addr: "unix:" + path, Token: secret})
	if err != nil {
		t.Fatalf("over a stale socket: %v", err)
	}
	if a.Addr() != "unix:"+path {
		t.Fatalf("Addr() = %q", a.Addr())
	}
	info, err := os.Stat(path)
	if err != nil || info.Mode().Type() != fs.ModeSocket || info.Mode().Perm() != 0o600 {
		t.Fatalf("socket %v, err %v; want a socket with mode 0600", info.Mode(), err)
	}
	// A second endpoint on the live socket is refused, leaving it alone.
	if _, err := e.ServeAttachConfig(engine.AttachConfig{Addr: "unix:" + path, Token: secret}); err == nil {
		t.Fatal("a second endpoint took over a live socket")
	}
	c := client.New(a.Addr(), client.WithToken(secret))
	if err := c.Initialize(t.Context(), 42, "127.0.0.1:4200"); err != nil {
		t.Fatalf("handshake over the unix socket: %v", err)
	}
	c.Close()
	if err := client.New(a.Addr(), client.WithToken("wrong-secret-0123456789")).Initialize(t.Context(), 42, "127.0.0.1:4201"); !errors.Is(err, vmre.ErrUnauthenticated) {
		t.Fatalf("wrong token over the unix socket: %v", err)
	}
	if rts := e.List(); len(rts) != 1 || rts[0].VMAddr != "127.0.0.1:4200" {
		t.Fatalf("runtimes: %+v", rts)
	}
	if err := a.Close(t.Context()); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Lstat(path); !errors.Is(err, fs.ErrNotExist) {
		t.Fatalf("socket file after Close: %v, want it removed", err)
	}

	// A regular file at the path is never removed.
	if err := os.WriteFile(path, []byte("data"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := e.ServeAttachConfig(engine.AttachConfig{Addr: "unix:" + path, Token: secret}); !errors.Is(err, vmre.ErrInvalidConfig) {
		t.Fatalf("over a regular file: %v, want ErrInvalidConfig", err)
	}
	if b, err := os.ReadFile(path); err != nil || string(b) != "data" {
		t.Fatalf("the regular file was touched: %q, %v", b, err)
	}
}
