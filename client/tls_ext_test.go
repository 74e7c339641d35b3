package client_test

import (
	"context"
	"crypto/tls"
	"errors"
	"net"
	"net/http"
	"path/filepath"
	"testing"

	"github.com/vmre/vmre"
	"github.com/vmre/vmre/client"
	handshakev1 "github.com/vmre/vmre/gen/vmre/handshake/v1"
	"github.com/vmre/vmre/internal/tlsfiles"
	"github.com/vmre/vmre/internal/tlstest"
	"github.com/vmre/vmre/server"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	"google.golang.org/protobuf/types/known/emptypb"
)

// serveOn serves vmre's handshake handler for init on lis, over TLS with
// cfg if it is not nil, until the test ends.
func serveOn(t *testing.T, lis net.Listener, init vmre.Initializer, wrap func(http.Handler) http.Handler, cfg *tls.Config) {
	t.Helper()
	mux := http.NewServeMux()
	mux.Handle(server.NewHandler(init))
	var h http.Handler = mux
	if wrap != nil {
		h = wrap(mux)
	}
	srv := server.NewHTTPServer(h)
	served := make(chan error, 1)
	go func() {
		if cfg != nil {
			served <- tlsfiles.Serve(srv, lis, cfg)
			return
		}
		served <- srv.Serve(lis)
	}()
	t.Cleanup(func() {
		_ = srv.Close()
		if err := <-served; !errors.Is(err, http.ErrServerClosed) {
			t.Errorf("serve: %v", err)
		}
	})
}

// pki is a CA with an engine certificate and a plugin's client
// certificate, as PEM files.
type pki struct {
	ca                 *tlstest.CA
	caPath             string
	engine             tls.Certificate
	clientCert, client string
}

func newPKI(t *testing.T) pki {
	t.Helper()
	ca := tlstest.NewCA(t, "test ca")
	p := pki{ca: ca, caPath: ca.WriteCA(t, filepath.Join(t.TempDir(), "ca.pem")), engine: ca.Issue(t, "127.0.0.1").Cert}
	p.clientCert, p.client = ca.Issue(t, "plugin").Write(t, t.TempDir())
	return p
}

// TestTLSProtocols: under WithTLS every protocol reaches vmre's engine over
// TLS, gRPC by HTTP/2 (ALPN), gRPC-Web and Connect by HTTP/1.1, with a
// client certificate the engine requires.
func TestTLSProtocols(t *testing.T) {
	t.Parallel()
	p := newPKI(t)
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	seen := &requestLog{}
	serveOn(t, lis, &versionEngine{}, seen.wrap, &tls.Config{
		Certificates: []tls.Certificate{p.engine}, ClientCAs: p.ca.Pool(), ClientAuth: tls.RequireAndVerifyClientCert,
	})
	cfg, err := client.TLSFromFiles(p.caPath, p.clientCert, p.client)
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		protocol  client.Protocol
		wantProto string
	}{
		{client.ProtocolGRPC, "HTTP/2.0"},
		{client.ProtocolGRPCWeb, "HTTP/1.1"},
		{client.ProtocolConnect, "HTTP/1.1"},
	}
	for i, tt := range tests {
		c := client.New(lis.Addr().String(), client.WithProtocol(tt.protocol), client.WithTLS(cfg))
		if err := c.Initialize(t.Context(), engineVersion, "127.0.0.1:5000"); err != nil {
			t.Fatalf("%v over tls: %v", tt.protocol, err)
		}
		c.Close()
		if got := seen.all()[i].Proto; got != tt.wantProto {
			t.Errorf("%v went over %s, want %s", tt.protocol, got, tt.wantProto)
		}
	}
	// Without the client certificate the engine refuses the connection.
	noCert, err := client.TLSFromFiles(p.caPath, "", "")
	if err != nil {
		t.Fatal(err)
	}
	err = client.New(lis.Addr().String(), client.WithTLS(noCert)).Initialize(t.Context(), engineVersion, "127.0.0.1:5000")
	if !errors.Is(err, vmre.ErrHandshakeFailed) {
		t.Fatalf("without a client certificate: %v", err)
	}
}

// TestTLSAgainstGRPCGo: the default gRPC protocol over TLS works against a
// real grpc-go server with TLS credentials, as a TLS-enabled engine of
// another ecosystem would serve.
func TestTLSAgainstGRPCGo(t *testing.T) {
	t.Parallel()
	p := newPKI(t)
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	s := grpc.NewServer(grpc.Creds(credentials.NewTLS(&tls.Config{Certificates: []tls.Certificate{p.engine}})))
	e := &versionEngine{}
	s.RegisterService(&runtimeServiceDesc, grpcInitialize(func(ctx context.Context, req *handshakev1.InitializeRequest) (*emptypb.Empty, error) {
		return &emptypb.Empty{}, e.Initialize(ctx, req.GetProtocolVersion(), req.GetAddr())
	}))
	go func() { _ = s.Serve(lis) }()
	t.Cleanup(s.Stop)
	cfg, err := client.TLSFromFiles(p.caPath, "", "")
	if err != nil {
		t.Fatal(err)
	}
	c := client.New("https://"+lis.Addr().String(), client.WithTLS(cfg))
	defer c.Close()
	if err := c.Initialize(t.Context(), engineVersion, "tls://127.0.0.1:5001"); err != nil {
		t.Fatal(err)
	}
	if got := e.acceptedAddrs(); len(got) != 1 || got[0] != "tls://127.0.0.1:5001" {
		t.Fatalf("engine accepted %v", got)
	}
}

// TestUnixSocketEngine: "unix:/path" reaches an engine on a unix socket,
// with every protocol.
func TestUnixSocketEngine(t *testing.T) {
	t.Parallel()
	path := filepath.Join(t.TempDir(), "attach.sock")
	lis, err := net.Listen("unix", path)
	if err != nil {
		t.Fatal(err)
	}
	e := &versionEngine{}
	serveOn(t, lis, e, nil, nil)
	for _, proto := range []client.Protocol{client.ProtocolGRPC, client.ProtocolGRPCWeb, client.ProtocolConnect} {
		c := client.New("unix:"+path, client.WithProtocol(proto))
		if err := c.Initialize(t.Context(), engineVersion, "127.0.0.1:5002"); err != nil {
			t.Fatalf("%v over a unix socket: %v", proto, err)
		}
		c.Close()
	}
	if n := len(e.acceptedAddrs()); n != 3 {
		t.Fatalf("engine accepted %d handshakes, want 3", n)
	}
}

// TestHandshakeTLSFromEnv: Handshake takes the CA and client certificate
// from VMRE_ENGINE_CA, VMRE_ENGINE_CERT and VMRE_ENGINE_KEY.
func TestHandshakeTLSFromEnv(t *testing.T) {
	p := newPKI(t)
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	serveOn(t, lis, &versionEngine{}, nil, &tls.Config{
		Certificates: []tls.Certificate{p.engine}, ClientCAs: p.ca.Pool(), ClientAuth: tls.RequireAndVerifyClientCert,
	})
	t.Setenv(vmre.EngineAddressKey, lis.Addr().String())
	t.Setenv(vmre.EngineCAKey, p.caPath)
	t.Setenv(vmre.EngineCertKey, p.clientCert)
	t.Setenv(vmre.EngineKeyKey, p.client)
	if err := client.Handshake(t.Context(), engineVersion, "127.0.0.1:5003"); err != nil {
		t.Fatal(err)
	}
	t.Setenv(vmre.EngineCertKey, "")
	t.Setenv(vmre.EngineKeyKey, "")
	if err := client.Handshake(t.Context(), engineVersion, "127.0.0.1:5003"); !errors.Is(err, vmre.ErrHandshakeFailed) {
		t.Fatalf("without the client certificate: %v", err)
	}
	t.Setenv(vmre.EngineCAKey, filepath.Join(t.TempDir(), "missing.pem"))
	if err := client.Handshake(t.Context(), engineVersion, "127.0.0.1:5003"); !errors.Is(err, vmre.ErrInvalidConfig) {
		t.Fatalf("with a missing CA file: %v, want ErrInvalidConfig", err)
	}
}
