//go:build linux

package subprocess_test

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/rs/zerolog"
	"github.com/vmre/vmre"
	"github.com/vmre/vmre/client"
	"github.com/vmre/vmre/internal/handshaketest"
	"github.com/vmre/vmre/internal/syncbuf"
	"github.com/vmre/vmre/internal/tlstest"
	"github.com/vmre/vmre/subprocess"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	"google.golang.org/protobuf/types/known/emptypb"
)

// noVMServiceEnv makes the rpcchainvm child serve gRPC without the VM
// service, and exit on the first SIGTERM.
const noVMServiceEnv = "SUBPROCESS_TEST_NO_VM_SERVICE"

// vmTLSEnv makes the rpcchainvm child serve its VM over TLS with the
// certificate and key in the directory it names (cert.pem, key.pem),
// requiring a client certificate from the CA in ca.pem there, and announce
// a tls:// address.
const vmTLSEnv = "SUBPROCESS_TEST_VM_TLS"

// childRPCChainVM behaves like a plugin built on avalanchego's
// rpcchainvm.Serve: it serves gRPC on its VM address and ignores SIGTERM
// until the VM service's Shutdown method has been called.
func childRPCChainVM() int {
	signals := make(chan os.Signal, 2)
	signal.Notify(signals, syscall.SIGTERM)
	var (
		ln  net.Listener
		err error
		srv *grpc.Server
	)
	if dir := os.Getenv(vmTLSEnv); dir != "" {
		ln, srv, err = tlsHandshake(dir)
	} else {
		ln, err = handshake(childVersion())
		srv = grpc.NewServer()
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "handshake:", err)
		return 1
	}
	var allowShutdown atomic.Bool
	if os.Getenv(noVMServiceEnv) == "" {
		srv.RegisterService(&grpc.ServiceDesc{
			ServiceName: "vm.VM",
			HandlerType: (*any)(nil),
			Methods: []grpc.MethodDesc{{
				MethodName: "Shutdown",
				Handler: func(_ any, _ context.Context, dec func(any) error, _ grpc.UnaryServerInterceptor) (any, error) {
					if err := dec(new(emptypb.Empty)); err != nil {
						return nil, err
					}
					allowShutdown.Store(true)
					fmt.Println("vm shutdown called")
					return &emptypb.Empty{}, nil
				},
			}},
		}, struct{}{})
	} else {
		allowShutdown.Store(true)
	}
	go func() { _ = srv.Serve(ln) }()
	fmt.Println("vm serving")
	for range signals {
		if !allowShutdown.Load() {
			fmt.Println("ignoring sigterm")
			continue
		}
		srv.Stop()
		fmt.Println("stopping on sigterm")
		return 0
	}
	return 1
}

// tlsHandshake listens, handshakes announcing tls://ADDR and returns a
// grpc server with the TLS credentials of dir (see vmTLSEnv).
func tlsHandshake(dir string) (net.Listener, *grpc.Server, error) {
	pair, err := tls.LoadX509KeyPair(filepath.Join(dir, "cert.pem"), filepath.Join(dir, "key.pem"))
	if err != nil {
		return nil, nil, err
	}
	pem, err := os.ReadFile(filepath.Join(dir, "ca.pem"))
	if err != nil {
		return nil, nil, err
	}
	cas := x509.NewCertPool()
	cas.AppendCertsFromPEM(pem)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, nil, err
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := client.Handshake(ctx, childVersion(), vmre.TLSAddrPrefix+ln.Addr().String()); err != nil {
		return nil, nil, err
	}
	creds := credentials.NewTLS(&tls.Config{Certificates: []tls.Certificate{pair}, ClientCAs: cas, ClientAuth: tls.RequireAndVerifyClientCert})
	return ln, grpc.NewServer(grpc.Creds(creds)), nil
}

// TestStopCallsVMShutdown: with Config.VMShutdown, a plugin that ignores
// SIGTERM until its VM's Shutdown method is called (avalanchego's
// rpcchainvm.Serve does) exits cleanly on Stop; without it, it is killed
// after the grace period. A VM server without the method answers
// unimplemented, and the stop goes on to SIGTERM.
func TestStopCallsVMShutdown(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name       string
		vmShutdown bool
		grace      time.Duration
		env        []string
		wantCode   int
		wantSignal string
		wantCall   bool
		vmTLS      bool
	}{
		// A generous grace: the clean exit must not come from a kill.
		{name: "with the call", vmShutdown: true, grace: 30 * time.Second, wantCode: 0, wantCall: true},
		{name: "without the call", vmShutdown: false, grace: 300 * time.Millisecond, wantCode: -1, wantSignal: "killed"},
		{name: "no vm service", vmShutdown: true, grace: 30 * time.Second, env: []string{noVMServiceEnv + "=1"}, wantCode: 0},
		// A VM announcing tls:// is called over TLS with Config.VMTLS.
		{name: "over tls", vmShutdown: true, vmTLS: true, grace: 30 * time.Second, wantCode: 0, wantCall: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			out := newCollector()
			cfg := &subprocess.Config{VMShutdown: tt.vmShutdown, GracefulTimeout: tt.grace, OnOutput: out.add}
			env := tt.env
			if tt.vmTLS {
				ca := tlstest.NewCA(t, "test ca")
				dir := t.TempDir()
				ca.WriteCA(t, filepath.Join(dir, "ca.pem"))
				ca.Issue(t, "127.0.0.1").Write(t, dir)
				cfg.VMTLS = &tls.Config{RootCAs: ca.Pool(), Certificates: []tls.Certificate{ca.Issue(t, "engine").Cert}}
				env = append(env, vmTLSEnv+"="+dir)
			}
			status, p := mustBootstrap(t, "rpcchainvm", cfg, env...)
			if tt.vmTLS && !strings.HasPrefix(status.Addr, vmre.TLSAddrPrefix) {
				t.Fatalf("announced address %q, want tls://", status.Addr)
			}
			out.waitFor(t, textIs("vm serving"))
			p.Stop(t.Context())
			st := p.ExitStatus()
			if st.Code != tt.wantCode || st.Signal != tt.wantSignal {
				t.Errorf("exit code %d, signal %q; want %d, %q (%v)", st.Code, st.Signal, tt.wantCode, tt.wantSignal, p.Err())
			}
			called := false
			for _, l := range out.snapshot() {
				called = called || l.Text == "vm shutdown called"
			}
			if called != tt.wantCall {
				t.Errorf("vm shutdown called: %v, want %v; output %v", called, tt.wantCall, out.snapshot())
			}
		})
	}
}

// announceEnv is the VM address the "announce" child announces in its
// handshake instead of one of its own.
const announceEnv = "SUBPROCESS_TEST_ANNOUNCE"

func init() { childModes["announce"] = childAnnounce }

// childAnnounce handshakes announcing $SUBPROCESS_TEST_ANNOUNCE, an
// address it does not listen on, and exits 0 on SIGTERM.
func childAnnounce() int {
	signals := make(chan os.Signal, 1)
	signal.Notify(signals, syscall.SIGTERM)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := client.Handshake(ctx, childVersion(), os.Getenv(announceEnv)); err != nil {
		fmt.Fprintln(os.Stderr, "handshake:", err)
		return 1
	}
	<-signals
	return 0
}

// TestStopDoesNotCallForeignVMAddr: a plugin that announces another
// process's service (here this test's own gRPC server, with a
// /vm.VM/Shutdown that counts its calls) or an address nothing listens on
// is not called on Stop, even with Config.VMShutdown: CheckVMAddr says
// why, and the stop goes straight to SIGTERM. A plugin's own VM server
// passes.
func TestStopDoesNotCallForeignVMAddr(t *testing.T) {
	t.Parallel()
	var calls atomic.Int64
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := grpc.NewServer()
	srv.RegisterService(&grpc.ServiceDesc{
		ServiceName: "vm.VM",
		HandlerType: (*any)(nil),
		Methods: []grpc.MethodDesc{{
			MethodName: "Shutdown",
			Handler: func(_ any, _ context.Context, dec func(any) error, _ grpc.UnaryServerInterceptor) (any, error) {
				calls.Add(1)
				return &emptypb.Empty{}, dec(new(emptypb.Empty))
			},
		}},
	}, struct{}{})
	go func() { _ = srv.Serve(ln) }()
	t.Cleanup(srv.Stop)
	closedAddr := handshaketest.RefusingAddr(t)

	tests := []struct {
		name, addr, want string
	}{
		{"another process's service", ln.Addr().String(), fmt.Sprintf("is listened on by pid %d, not by the plugin", os.Getpid())},
		{"nothing listens", closedAddr, "nothing listens on " + closedAddr},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var logs syncbuf.Buffer
			cfg := &subprocess.Config{VMShutdown: true, GracefulTimeout: 30 * time.Second, Log: zerolog.New(&logs)}
			_, p := mustBootstrap(t, "announce", cfg, announceEnv+"="+tt.addr)
			// A child that a parallel test forks holds a copy of every
			// descriptor of this process until its exec, so CheckVMAddr
			// may name that child as the service's listener, or find the
			// closed listener still held by it. Such a window is short:
			// ask again while the verdict stands and another holder is
			// named.
			err := p.CheckVMAddr()
			for deadline := time.Now().Add(time.Minute); errors.Is(err, vmre.ErrForeignVMAddr) &&
				!strings.Contains(err.Error(), tt.want) && time.Now().Before(deadline); {
				time.Sleep(10 * time.Millisecond) // a poll rate, not a wait for an event
				err = p.CheckVMAddr()
			}
			if !errors.Is(err, vmre.ErrForeignVMAddr) || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("CheckVMAddr() = %v, want ErrForeignVMAddr saying %q", err, tt.want)
			}
			p.Stop(t.Context())
			if st := p.ExitStatus(); st.Code != 0 || st.Signal != "" {
				t.Errorf("exit %v, want 0 (on SIGTERM)", st)
			}
			if n := calls.Load(); n != 0 {
				t.Fatalf("Shutdown called %d times on an address the plugin does not listen on", n)
			}
			if !strings.Contains(logs.String(), "vm shutdown not called") {
				t.Errorf("no \"vm shutdown not called\" in the log:\n%s", logs.String())
			}
		})
	}
	t.Run("the plugin's own server", func(t *testing.T) {
		out := newCollector()
		_, p := mustBootstrap(t, "rpcchainvm", &subprocess.Config{OnOutput: out.add})
		out.waitFor(t, textIs("vm serving"))
		if err := p.CheckVMAddr(); err != nil {
			t.Errorf("CheckVMAddr() = %v, want nil", err)
		}
	})
}
