// Package handshaketest has what tests of the packages around the
// handshake share: vmre's handshake handler served on a real loopback
// listener, the test binary re-run as a helper process ([Child]), and a
// foreign process's flood of a handshake port ([Flood]), which the bench
// program runs too.
package handshaketest

import (
	"errors"
	"net"
	"net/http"
	"testing"

	"github.com/vmre/vmre"
	"github.com/vmre/vmre/server"
)

// Serve serves server.NewHandler(init, opts...) with server.NewHTTPServer
// on 127.0.0.1:0 and returns its "host:port". If wrap is not nil, it wraps
// the handler (to observe requests). The server is closed when the test
// ends, and the test fails if it stopped for any other reason.
func Serve(tb testing.TB, init vmre.Initializer, wrap func(http.Handler) http.Handler, opts ...server.Option) string {
	tb.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		tb.Fatalf("listen: %v", err)
	}
	path, handler := server.NewHandler(init, opts...)
	mux := http.NewServeMux()
	mux.Handle(path, handler)
	var h http.Handler = mux
	if wrap != nil {
		h = wrap(mux)
	}
	srv := server.NewHTTPServer(h)
	served := make(chan error, 1)
	go func() { served <- srv.Serve(ln) }()
	tb.Cleanup(func() {
		if err := srv.Close(); err != nil {
			tb.Errorf("close server: %v", err)
		}
		if err := <-served; !errors.Is(err, http.ErrServerClosed) {
			tb.Errorf("serve: %v", err)
		}
	})
	return ln.Addr().String()
}
