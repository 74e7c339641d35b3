//go:build !linux

package handshaketest

import (
	"net"
	"testing"
)

// RefusingAddr returns a loopback TCP address nothing listens on: the
// address of a listener it closed, which another could take meanwhile.
func RefusingAddr(tb testing.TB) string {
	tb.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		tb.Fatalf("listen: %v", err)
	}
	addr := ln.Addr().String()
	if err := ln.Close(); err != nil {
		tb.Fatalf("close listener: %v", err)
	}
	return addr
}
