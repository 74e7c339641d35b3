// Package tlsfiles builds the TLS configurations of vmre's servers (the API
// port, the attach endpoint) and clients (a plugin's handshake, the engine's
// probes of remote VMs) from PEM files, and re-reads a certificate and its
// key when the files change, as Kubernetes and Nomad rotate them.
package tlsfiles

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"sync"
)

// KeyPair is a certificate and its private key kept in PEM files. Create it
// with [LoadKeyPair]. It is safe for concurrent use.
type KeyPair struct {
	certPath, keyPath string

	mu       sync.Mutex
	cert     *tls.Certificate
	certInfo os.FileInfo // the files as they were when cert was read
	keyInfo  os.FileInfo
}

// LoadKeyPair reads the certificate (with its chain) at certPath and the
// key at keyPath, and fails if they do not parse or do not match.
func LoadKeyPair(certPath, keyPath string) (*KeyPair, error) {
	if certPath == "" || keyPath == "" {
		return nil, errors.New("tls certificate and key: both files are needed")
	}
	k := &KeyPair{certPath: certPath, keyPath: keyPath}
	if err := k.reloadLocked(); err != nil {
		return nil, err
	}
	return k, nil
}

// Certificate returns the current certificate. It first stats both files
// (os.Stat follows the symlink Kubernetes swaps when it updates a Secret)
// and re-reads them if either is another file or has another size or
// modification time than when last read. If re-reading fails, as it does
// between the writes of a rotation that replaces the two files one by one,
// it returns the certificate read before and tries again at the next call.
// It is meant for [tls.Config.GetCertificate] and
// [tls.Config.GetClientCertificate]: two stats per TLS handshake.
func (k *KeyPair) Certificate() (*tls.Certificate, error) {
	k.mu.Lock()
	defer k.mu.Unlock()
	if changed(k.certPath, k.certInfo) || changed(k.keyPath, k.keyInfo) {
		// The previous certificate stays in use on failure.
		_ = k.reloadLocked()
	}
	return k.cert, nil
}

// reloadLocked reads both files into k. The caller holds k.mu, or owns k.
func (k *KeyPair) reloadLocked() error {
	// Stat before reading: a change made while reading shows at the next
	// call as a change again, so it is never missed.
	certInfo, err := os.Stat(k.certPath)
	if err != nil {
		return fmt.Errorf("read tls certificate: %w", err)
	}
	keyInfo, err := os.Stat(k.keyPath)
	if err != nil {
		return fmt.Errorf("read tls key: %w", err)
	}
	cert, err := tls.LoadX509KeyPair(k.certPath, k.keyPath)
	if err != nil {
		return fmt.Errorf("load tls key pair %s, %s: %w", k.certPath, k.keyPath, err)
	}
	k.cert, k.certInfo, k.keyInfo = &cert, certInfo, keyInfo
	return nil
}

// changed reports whether the file at path is not the one old describes.
func changed(path string, old os.FileInfo) bool {
	info, err := os.Stat(path)
	if err != nil {
		return false // keep what was read while the file is away
	}
	return !os.SameFile(info, old) || info.Size() != old.Size() || !info.ModTime().Equal(old.ModTime())
}

// LoadCA reads a PEM bundle of CA certificates into a pool. It fails if
// the file holds no certificate.
func LoadCA(path string) (*x509.CertPool, error) {
	pem, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("read ca file: %w", err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(pem) {
		return nil, fmt.Errorf("read ca file %s: no PEM certificate in it", path)
	}
	return pool, nil
}

// ServerConfig returns the TLS configuration of a server presenting kp.
// With clientCAs set, every client must present a certificate one of them
// issued (mutual TLS). TLS 1.2 is the oldest version accepted.
func ServerConfig(kp *KeyPair, clientCAs *x509.CertPool) *tls.Config {
	cfg := &tls.Config{
		MinVersion: tls.VersionTLS12,
		GetCertificate: func(*tls.ClientHelloInfo) (*tls.Certificate, error) {
			return kp.Certificate()
		},
	}
	if clientCAs != nil {
		cfg.ClientCAs = clientCAs
		cfg.ClientAuth = tls.RequireAndVerifyClientCert
	}
	return cfg
}

// ClientConfig returns the TLS configuration of a client that trusts the
// CAs in caPath (the system's roots if empty) and presents the key pair in
// certPath and keyPath, re-read when they change (none if both are empty).
func ClientConfig(caPath, certPath, keyPath string) (*tls.Config, error) {
	cfg := &tls.Config{MinVersion: tls.VersionTLS12}
	if caPath != "" {
		pool, err := LoadCA(caPath)
		if err != nil {
			return nil, err
		}
		cfg.RootCAs = pool
	}
	if certPath != "" || keyPath != "" {
		kp, err := LoadKeyPair(certPath, keyPath)
		if err != nil {
			return nil, err
		}
		cfg.GetClientCertificate = func(*tls.CertificateRequestInfo) (*tls.Certificate, error) {
			return kp.Certificate()
		}
	}
	return cfg, nil
}

// Serve serves srv on lis over TLS with cfg: HTTP/2 chosen by ALPN, and
// HTTP/1.1 for the clients that ask for it (curl, browsers' gRPC-Web). It
// blocks like [http.Server.Serve] and returns its error. cfg is not
// modified, and may be shared by several servers.
func Serve(srv *http.Server, lis net.Listener, cfg *tls.Config) error {
	if srv.Protocols == nil {
		srv.Protocols = new(http.Protocols)
		srv.Protocols.SetHTTP1(true)
	}
	srv.Protocols.SetHTTP2(true)
	// A clone: net/http adds the ALPN protocols to the server's config in
	// place, and cfg may serve several servers (the API port and the
	// attach endpoint). The certificate comes from cfg.GetCertificate.
	srv.TLSConfig = cfg.Clone()
	return srv.ServeTLS(lis, "", "")
}
