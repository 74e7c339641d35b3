package tlsfiles_test

import (
	"crypto/tls"
	"errors"
	"math/big"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"testing"

	"github.com/vmre/vmre/internal/tlsfiles"
	"github.com/vmre/vmre/internal/tlstest"
)

// serve serves a handler answering 204 over TLS with cfg on a real
// loopback port and returns its https base URL.
func serve(t *testing.T, cfg *tls.Config) string {
	t.Helper()
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		w.WriteHeader(http.StatusNoContent)
	})}
	done := make(chan error, 1)
	go func() { done <- tlsfiles.Serve(srv, lis, cfg) }()
	t.Cleanup(func() {
		_ = srv.Close()
		if err := <-done; !errors.Is(err, http.ErrServerClosed) {
			t.Errorf("Serve: %v", err)
		}
	})
	return "https://" + lis.Addr().String()
}

// get makes one request on a new connection and returns the response's
// protocol and the serial number of the server's certificate.
func get(t *testing.T, url string, cfg *tls.Config, http2 bool) (string, *big.Int, error) {
	t.Helper()
	var protocols http.Protocols
	if http2 {
		protocols.SetHTTP2(true)
	} else {
		protocols.SetHTTP1(true)
	}
	// A clone: a transport adds "h2" to the ALPN list of the config it is
	// given, which would make a later HTTP/1.1-only client offer h2.
	tr := &http.Transport{Protocols: &protocols, TLSClientConfig: cfg.Clone()}
	defer tr.CloseIdleConnections()
	resp, err := (&http.Client{Transport: tr}).Get(url)
	if err != nil {
		return "", nil, err
	}
	_ = resp.Body.Close()
	return resp.Proto, resp.TLS.PeerCertificates[0].SerialNumber, nil
}

func TestServeSpeaksHTTP2AndHTTP1(t *testing.T) {
	t.Parallel()
	ca := tlstest.NewCA(t, "test ca")
	certPath, keyPath := ca.Issue(t, "127.0.0.1").Write(t, t.TempDir())
	kp, err := tlsfiles.LoadKeyPair(certPath, keyPath)
	if err != nil {
		t.Fatal(err)
	}
	url := serve(t, tlsfiles.ServerConfig(kp, nil))
	client := &tls.Config{RootCAs: ca.Pool()}
	for _, tt := range []struct {
		name  string
		http2 bool
		want  string
	}{
		{name: "h2 by alpn", http2: true, want: "HTTP/2.0"},
		{name: "http/1.1", http2: false, want: "HTTP/1.1"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			proto, _, err := get(t, url, client, tt.http2)
			if err != nil || proto != tt.want {
				t.Fatalf("proto %q, err %v; want %s", proto, err, tt.want)
			}
		})
	}
	// A client that does not trust the CA is refused.
	if _, _, err := get(t, url, &tls.Config{}, true); err == nil {
		t.Fatal("a client without the CA connected")
	}
}

// TestKeyPairFollowsSecretRotation: a certificate rotated the way the
// kubelet updates a Secret volume (one rename of the ..data symlink) is
// served from the next handshake on, without a restart.
func TestKeyPairFollowsSecretRotation(t *testing.T) {
	t.Parallel()
	ca := tlstest.NewCA(t, "test ca")
	first := ca.Issue(t, "127.0.0.1")
	secret := tlstest.NewSecret(t, t.TempDir(), first)
	kp, err := tlsfiles.LoadKeyPair(secret.Paths())
	if err != nil {
		t.Fatal(err)
	}
	url := serve(t, tlsfiles.ServerConfig(kp, nil))
	client := &tls.Config{RootCAs: ca.Pool()}
	if _, serial, err := get(t, url, client, true); err != nil || serial.Cmp(first.Serial) != 0 {
		t.Fatalf("serial %v, err %v; want %v", serial, err, first.Serial)
	}
	second := ca.Issue(t, "127.0.0.1")
	secret.Rotate(t, second)
	if _, serial, err := get(t, url, client, true); err != nil || serial.Cmp(second.Serial) != 0 {
		t.Fatalf("after rotation: serial %v, err %v; want %v", serial, err, second.Serial)
	}
}

// TestKeyPairKeepsServingDuringHalfRotation: files replaced one by one
// (certificate first) do not break the server: the old pair is served
// until the new key matches.
func TestKeyPairKeepsServingDuringHalfRotation(t *testing.T) {
	t.Parallel()
	ca := tlstest.NewCA(t, "test ca")
	dir := t.TempDir()
	first := ca.Issue(t, "127.0.0.1")
	certPath, keyPath := first.Write(t, dir)
	kp, err := tlsfiles.LoadKeyPair(certPath, keyPath)
	if err != nil {
		t.Fatal(err)
	}
	url := serve(t, tlsfiles.ServerConfig(kp, nil))
	client := &tls.Config{RootCAs: ca.Pool()}

	second := ca.Issue(t, "127.0.0.1")
	next := t.TempDir()
	newCert, newKey := second.Write(t, next)
	if err := os.Rename(newCert, certPath); err != nil {
		t.Fatal(err)
	}
	if _, serial, err := get(t, url, client, true); err != nil || serial.Cmp(first.Serial) != 0 {
		t.Fatalf("half rotated: serial %v, err %v; want the old %v", serial, err, first.Serial)
	}
	if err := os.Rename(newKey, keyPath); err != nil {
		t.Fatal(err)
	}
	if _, serial, err := get(t, url, client, true); err != nil || serial.Cmp(second.Serial) != 0 {
		t.Fatalf("rotated: serial %v, err %v; want %v", serial, err, second.Serial)
	}
}

func TestMutualTLS(t *testing.T) {
	t.Parallel()
	ca := tlstest.NewCA(t, "test ca")
	other := tlstest.NewCA(t, "other ca")
	dir := t.TempDir()
	certPath, keyPath := ca.Issue(t, "127.0.0.1").Write(t, dir)
	kp, err := tlsfiles.LoadKeyPair(certPath, keyPath)
	if err != nil {
		t.Fatal(err)
	}
	url := serve(t, tlsfiles.ServerConfig(kp, ca.Pool()))
	caPath := ca.WriteCA(t, filepath.Join(dir, "ca.pem"))
	clientDir, strangerDir := t.TempDir(), t.TempDir()
	clientCert, clientKey := ca.Issue(t, "vm").Write(t, clientDir)
	strangerCert, strangerKey := other.Issue(t, "vm").Write(t, strangerDir)
	tests := []struct {
		name      string
		cert, key string
		wantErr   bool
	}{
		{name: "no client certificate", wantErr: true},
		{name: "certificate of another ca", cert: strangerCert, key: strangerKey, wantErr: true},
		{name: "certificate of the ca", cert: clientCert, key: clientKey},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			cfg, err := tlsfiles.ClientConfig(caPath, tt.cert, tt.key)
			if err != nil {
				t.Fatal(err)
			}
			for _, http2 := range []bool{true, false} {
				_, _, err := get(t, url, cfg, http2)
				if (err != nil) != tt.wantErr {
					t.Errorf("http2 %v: err %v, wantErr %v", http2, err, tt.wantErr)
				}
			}
		})
	}
}

func TestLoadErrors(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	ca := tlstest.NewCA(t, "test ca")
	certPath, keyPath := ca.Issue(t, "127.0.0.1").Write(t, dir)
	otherCert, _ := ca.Issue(t, "127.0.0.1").Write(t, t.TempDir())
	junk := filepath.Join(dir, "junk.pem")
	if err := os.WriteFile(junk, []byte("not pem"), 0o600); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name      string
		cert, key string
	}{
		{name: "no key", cert: certPath},
		{name: "missing file", cert: filepath.Join(dir, "nope.pem"), key: keyPath},
		{name: "key of another certificate", cert: otherCert, key: keyPath},
		{name: "junk", cert: junk, key: junk},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			if _, err := tlsfiles.LoadKeyPair(tt.cert, tt.key); err == nil {
				t.Fatal("LoadKeyPair succeeded")
			}
		})
	}
	if _, err := tlsfiles.LoadCA(junk); err == nil {
		t.Fatal("LoadCA accepted a file without a certificate")
	}
}
