//go:build unix

package main

import (
	"context"
	"crypto/tls"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"connectrpc.com/connect"
	vmrev1 "github.com/vmre/vmre/gen/vmre/v1"
	"github.com/vmre/vmre/gen/vmre/v1/vmrev1connect"
	"github.com/vmre/vmre/internal/tlstest"
	"github.com/vmre/vmre/internal/token"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
)

// tlsFiles are the PEM files of a test deployment: a CA, the engine's
// certificate and a VM's client certificate, both issued by the CA.
type tlsFiles struct {
	ca                 *tlstest.CA
	caPath             string
	engineCert, engKey string
	vmCert, vmKey      string
}

func newTLSFiles(t *testing.T) tlsFiles {
	t.Helper()
	ca := tlstest.NewCA(t, "vmre test ca")
	dir := t.TempDir()
	f := tlsFiles{ca: ca, caPath: ca.WriteCA(t, filepath.Join(dir, "ca.pem"))}
	f.engineCert, f.engKey = ca.Issue(t, "127.0.0.1").Write(t, t.TempDir())
	f.vmCert, f.vmKey = ca.Issue(t, "vm").Write(t, t.TempDir())
	return f
}

// writeSecret replaces the file at path with content, mode 0600, by a
// rename, as a rotation does.
func writeSecret(t *testing.T, path, content string) {
	t.Helper()
	tmp := path + ".new"
	if err := os.WriteFile(tmp, []byte(content+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, path); err != nil {
		t.Fatal(err)
	}
}

// apiClient is a vmre.v1 client over TLS presenting cert (none if empty),
// speaking gRPC over HTTP/2 or gRPC-Web over HTTP/1.1.
func apiClient(t *testing.T, f tlsFiles, addr, cert, key string, http2 bool, opts ...connect.ClientOption) vmrev1connect.RuntimeServiceClient {
	t.Helper()
	cfg := &tls.Config{RootCAs: f.ca.Pool()}
	if cert != "" {
		pair, err := tls.LoadX509KeyPair(cert, key)
		if err != nil {
			t.Fatal(err)
		}
		cfg.Certificates = []tls.Certificate{pair}
	}
	var protocols http.Protocols
	opt := connect.WithGRPC()
	if http2 {
		protocols.SetHTTP2(true)
	} else {
		protocols.SetHTTP1(true)
		opt = connect.WithGRPCWeb()
	}
	tr := &http.Transport{Protocols: &protocols, TLSClientConfig: cfg}
	t.Cleanup(tr.CloseIdleConnections)
	return vmrev1connect.NewRuntimeServiceClient(&http.Client{Transport: tr}, "https://"+addr, append(opts, opt)...)
}

// withBearer sends tok as the API token.
func withBearer(tok string) connect.ClientOption {
	return connect.WithInterceptors(connect.UnaryInterceptorFunc(func(next connect.UnaryFunc) connect.UnaryFunc {
		return func(ctx context.Context, req connect.AnyRequest) (connect.AnyResponse, error) {
			req.Header().Set("Authorization", "Bearer "+tok)
			return next(ctx, req)
		}
	}))
}

// TestRunOverMutualTLS runs `vmre run --attach` with --tls-cert, --tls-key
// and --client-ca, and tokens from files: the API answers a client with a
// certificate over HTTP/2 (connect-go and grpc-go) and HTTP/1.1
// (gRPC-Web) and refuses one without; a VM attaches over TLS with `vmre
// handshake --ca --cert --key`; rotated token files take effect at once
// and the old tokens stop working.
func TestRunOverMutualTLS(t *testing.T) {
	f := newTLSFiles(t)
	dir := t.TempDir()
	apiTokenPath, attachTokenPath := filepath.Join(dir, "api-token"), filepath.Join(dir, "attach-token")
	apiToken, attachToken := token.New(), token.New()
	writeSecret(t, apiTokenPath, apiToken)
	writeSecret(t, attachTokenPath, attachToken)
	p := startRun(t, "--attach", "--tls-cert", f.engineCert, "--tls-key", f.engKey, "--client-ca", f.caPath,
		"--token-file", apiTokenPath, "--attach-token-file", attachTokenPath)
	apiAddr := p.waitFor(t, "api listening", "").Addr
	attachAddr := p.waitFor(t, "attach endpoint listening", "").Addr

	ctx := t.Context()
	h2 := apiClient(t, f, apiAddr, f.vmCert, f.vmKey, true)
	h1 := apiClient(t, f, apiAddr, f.vmCert, f.vmKey, false)
	for name, c := range map[string]vmrev1connect.RuntimeServiceClient{"http/2": h2, "http/1.1": h1} {
		if _, err := c.ListRuntimes(ctx, &vmrev1.ListRuntimesRequest{}); err != nil {
			t.Fatalf("%s with a client certificate: %v", name, err)
		}
	}
	for name, http2 := range map[string]bool{"http/2": true, "http/1.1": false} {
		c := apiClient(t, f, apiAddr, "", "", http2)
		if _, err := c.ListRuntimes(ctx, &vmrev1.ListRuntimesRequest{}); err == nil {
			t.Fatalf("%s without a client certificate: answered", name)
		}
	}

	// A real grpc-go client, as Kubernetes' gRPC probe or grpcurl would be.
	pair, err := tls.LoadX509KeyPair(f.vmCert, f.vmKey)
	if err != nil {
		t.Fatal(err)
	}
	conn, err := grpc.NewClient(apiAddr, grpc.WithTransportCredentials(credentials.NewTLS(&tls.Config{
		RootCAs: f.ca.Pool(), Certificates: []tls.Certificate{pair},
	})))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	resp, err := healthpb.NewHealthClient(conn).Check(ctx, &healthpb.HealthCheckRequest{})
	if err != nil || resp.GetStatus() != healthpb.HealthCheckResponse_SERVING {
		t.Fatalf("grpc-go health check over mTLS: %v, %v", resp, err)
	}

	// The API token file rotates: the old token stops working.
	stop := func(tok string) connect.Code {
		c := apiClient(t, f, apiAddr, f.vmCert, f.vmKey, true, withBearer(tok))
		_, err := c.StopRuntime(ctx, &vmrev1.StopRuntimeRequest{Id: "r404"})
		return connect.CodeOf(err)
	}
	if code := stop(apiToken); code != connect.CodeNotFound {
		t.Fatalf("stop with the api token: %v, want not_found (authorized, no such runtime)", code)
	}
	newAPIToken := token.New()
	writeSecret(t, apiTokenPath, newAPIToken)
	if code := stop(apiToken); code != connect.CodeUnauthenticated {
		t.Fatalf("stop with the rotated-out api token: %v, want unauthenticated", code)
	}
	if code := stop(newAPIToken); code != connect.CodeNotFound {
		t.Fatalf("stop with the new api token: %v, want not_found", code)
	}

	// A VM on "another host" attaches over TLS with its client certificate
	// and the attach token.
	handshake := func(tok string, extra ...string) int {
		args := append([]string{"handshake", "--engine", attachAddr, "--token", tok, "--vm-addr", "127.0.0.1:4100",
			"--ca", f.caPath}, extra...)
		code, _, _ := vmreCmd(t, args...)
		return code
	}
	if code := handshake(attachToken); code != exitFailure {
		t.Fatalf("handshake without a client certificate: exit %d, want %d", code, exitFailure)
	}
	withCert := []string{"--cert", f.vmCert, "--key", f.vmKey}
	if code := handshake(attachToken, withCert...); code != exitOK {
		t.Fatalf("handshake over mTLS: exit %d", code)
	}
	newAttachToken := token.New()
	writeSecret(t, attachTokenPath, newAttachToken)
	if code := handshake(attachToken, withCert...); code != exitFailure {
		t.Fatalf("handshake with the rotated-out attach token: exit %d, want %d", code, exitFailure)
	}
	if code := handshake(newAttachToken, withCert...); code != exitOK {
		t.Fatalf("handshake with the new attach token: exit %d", code)
	}
	list, err := h2.ListRuntimes(ctx, &vmrev1.ListRuntimesRequest{})
	if err != nil {
		t.Fatal(err)
	}
	if rts := list.GetRuntimes(); len(rts) != 1 || !strings.Contains(rts[0].GetVmAddr(), "127.0.0.1:4100") {
		t.Fatalf("runtimes after the handshakes: %v", rts)
	}
	p.signal(t, os.Interrupt)
	if code := p.exitCode(t); code != exitOK {
		t.Fatalf("exit code %d; log:\n%s", code, p.log.String())
	}
}
