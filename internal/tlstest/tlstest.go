// Package tlstest makes certificate authorities and certificates for tests
// with crypto/x509, and writes them as PEM files the way vmre's flags and
// environment variables take them.
package tlstest

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"sync/atomic"
	"testing"
	"time"
)

// CA is a certificate authority that issues certificates for tests.
type CA struct {
	cert   *x509.Certificate
	key    *ecdsa.PrivateKey
	der    []byte
	serial atomic.Int64
}

// NewCA returns a fresh self-signed CA named name.
func NewCA(tb testing.TB, name string) *CA {
	tb.Helper()
	key := newKey(tb)
	tmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(1),
		Subject:               pkix.Name{CommonName: name},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(24 * time.Hour),
		IsCA:                  true,
		BasicConstraintsValid: true,
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageDigitalSignature,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		tb.Fatal(err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		tb.Fatal(err)
	}
	ca := &CA{cert: cert, key: key, der: der}
	ca.serial.Store(1)
	return ca
}

// Pool returns a pool holding the CA's certificate.
func (ca *CA) Pool() *x509.CertPool {
	p := x509.NewCertPool()
	p.AddCert(ca.cert)
	return p
}

// WriteCA writes the CA's certificate as PEM to path.
func (ca *CA) WriteCA(tb testing.TB, path string) string {
	tb.Helper()
	writePEM(tb, path, "CERTIFICATE", ca.der)
	return path
}

// Issued is a certificate the CA issued and its key.
type Issued struct {
	Cert    tls.Certificate
	Serial  *big.Int
	certPEM []byte
	keyPEM  []byte
}

// Issue returns a certificate for name, valid for server and client
// authentication, for 127.0.0.1, ::1 and localhost (and name, if it is an
// IP or a DNS name). Each has a new serial number.
func (ca *CA) Issue(tb testing.TB, name string) *Issued {
	tb.Helper()
	key := newKey(tb)
	serial := big.NewInt(ca.serial.Add(1))
	tmpl := &x509.Certificate{
		SerialNumber: serial,
		Subject:      pkix.Name{CommonName: name},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(24 * time.Hour),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth},
		DNSNames:     []string{"localhost"},
		IPAddresses:  []net.IP{net.IPv4(127, 0, 0, 1), net.IPv6loopback},
	}
	if ip := net.ParseIP(name); ip != nil {
		tmpl.IPAddresses = append(tmpl.IPAddresses, ip)
	} else if name != "" {
		tmpl.DNSNames = append(tmpl.DNSNames, name)
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.cert, &key.PublicKey, ca.key)
	if err != nil {
		tb.Fatal(err)
	}
	keyDER, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		tb.Fatal(err)
	}
	certPEM := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})
	keyPEM := pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: keyDER})
	pair, err := tls.X509KeyPair(certPEM, keyPEM)
	if err != nil {
		tb.Fatal(err)
	}
	return &Issued{Cert: pair, Serial: serial, certPEM: certPEM, keyPEM: keyPEM}
}

// Write writes the certificate and key as PEM files cert.pem and key.pem
// (mode 0600) in dir and returns their paths.
func (i *Issued) Write(tb testing.TB, dir string) (certPath, keyPath string) {
	tb.Helper()
	certPath, keyPath = filepath.Join(dir, "cert.pem"), filepath.Join(dir, "key.pem")
	writeFile(tb, certPath, i.certPEM)
	writeFile(tb, keyPath, i.keyPEM)
	return certPath, keyPath
}

// Secret lays out a key pair as Kubernetes mounts a Secret: dir/tls.crt
// and dir/tls.key are symlinks through dir/..data to a timestamped
// directory, and [Secret.Rotate] swaps ..data atomically to a new one.
type Secret struct {
	dir string
	gen int
}

// NewSecret mounts i in dir as a Kubernetes Secret volume would.
func NewSecret(tb testing.TB, dir string, i *Issued) *Secret {
	tb.Helper()
	s := &Secret{dir: dir}
	s.Rotate(tb, i)
	for _, name := range []string{"tls.crt", "tls.key"} {
		if err := os.Symlink(filepath.Join("..data", name), filepath.Join(dir, name)); err != nil {
			tb.Fatal(err)
		}
	}
	return s
}

// Paths returns the certificate's and the key's paths.
func (s *Secret) Paths() (certPath, keyPath string) {
	return filepath.Join(s.dir, "tls.crt"), filepath.Join(s.dir, "tls.key")
}

// Rotate writes i into a new timestamped directory and points ..data at
// it with one rename, as the kubelet does.
func (s *Secret) Rotate(tb testing.TB, i *Issued) {
	tb.Helper()
	s.gen++
	data := filepath.Join(s.dir, "..gen"+big.NewInt(int64(s.gen)).String())
	if err := os.Mkdir(data, 0o700); err != nil {
		tb.Fatal(err)
	}
	writeFile(tb, filepath.Join(data, "tls.crt"), i.certPEM)
	writeFile(tb, filepath.Join(data, "tls.key"), i.keyPEM)
	tmp := filepath.Join(s.dir, "..data_tmp")
	if err := os.Symlink(filepath.Base(data), tmp); err != nil {
		tb.Fatal(err)
	}
	if err := os.Rename(tmp, filepath.Join(s.dir, "..data")); err != nil {
		tb.Fatal(err)
	}
}

func newKey(tb testing.TB) *ecdsa.PrivateKey {
	tb.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		tb.Fatal(err)
	}
	return key
}

func writePEM(tb testing.TB, path, typ string, der []byte) {
	tb.Helper()
	writeFile(tb, path, pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: der}))
}

func writeFile(tb testing.TB, path string, b []byte) {
	tb.Helper()
	if err := os.WriteFile(path, b, 0o600); err != nil {
		tb.Fatal(err)
	}
}
