//go:build unix

package server_test

import (
	"bufio"
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"io"
	"net"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"

	"github.com/vmre/vmre/server"
)

// Transport buffers between the client's writes and the handler's reads,
// kept small so that what the client manages to write is close to what the
// server read. They are not the handler's doing, so the test server may set
// them without changing what is tested. The stream window is HTTP/2's
// initial one: a client may fill that much before it has seen the server's
// settings, so a smaller window makes Go's server refuse its requests.
const (
	smallSocketBuffer = 4 << 10
	smallStreamWindow = 64<<10 - 1
)

// serveSmallBuffers serves the Runtime handler like handshaketest.Serve,
// but with small socket buffers and HTTP/2 stream window.
func serveSmallBuffers(t *testing.T) string {
	t.Helper()
	// The receive buffer is set on the listener, so that connections have
	// it from the start: shrinking it on an established connection, whose
	// advertised window was sized for the larger one, stalls the transfer.
	lc := net.ListenConfig{Control: func(_, _ string, c syscall.RawConn) error {
		var err error
		if cerr := c.Control(func(fd uintptr) {
			err = syscall.SetsockoptInt(int(fd), syscall.SOL_SOCKET, syscall.SO_RCVBUF, smallSocketBuffer)
		}); cerr != nil {
			return cerr
		}
		return err
	}}
	ln, err := lc.Listen(t.Context(), "tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	path, h := server.NewHandler(nopInitializer{})
	mux := http.NewServeMux()
	mux.Handle(path, h)
	srv := server.NewHTTPServer(mux)
	srv.HTTP2.MaxReceiveBufferPerStream = smallStreamWindow
	served := make(chan error, 1)
	go func() { served <- srv.Serve(ln) }()
	t.Cleanup(func() {
		// Shutdown, not Close: it waits for the HTTP/1.1 connections,
		// which after an unread body linger half-closed for a while so
		// that the answer is not lost to a reset (net/http's
		// closeWriteAndWait).
		if err := srv.Shutdown(context.Background()); err != nil {
			t.Errorf("shut down server: %v", err)
		}
		if err := <-served; !errors.Is(err, http.ErrServerClosed) {
			t.Errorf("serve: %v", err)
		}
	})
	return ln.Addr().String()
}

// hugeBody is the body of an oversized request: for the enveloped
// protocols a gRPC frame header declaring all of it, then filler. Every
// byte handed out is counted.
type hugeBody struct {
	header  []byte
	left    int64
	written atomic.Int64
}

const hugeBodySize = 64 << 20

func newHugeBody(enveloped bool) *hugeBody {
	b := &hugeBody{left: hugeBodySize}
	if enveloped {
		b.header = make([]byte, 5)
		binary.BigEndian.PutUint32(b.header[1:], hugeBodySize-5)
	}
	return b
}

func (b *hugeBody) Read(p []byte) (int, error) {
	if b.left == 0 {
		return 0, io.EOF
	}
	p = p[:min(int64(len(p)), b.left)]
	n := copy(p, b.header)
	b.header = b.header[n:]
	for i := n; i < len(p); i++ {
		p[i] = 'h'
	}
	b.left -= int64(len(p))
	b.written.Add(int64(len(p)))
	return len(p), nil
}

// http1Oversized sends one HTTP/1.1 POST with body on a raw connection,
// writing the body while reading the answer, and returns the answer and
// how many body bytes had been written into the socket when it arrived.
func http1Oversized(t *testing.T, addr, contentType string, body *hugeBody) (*http.Response, []byte, int64) {
	t.Helper()
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	if err := c.(*net.TCPConn).SetWriteBuffer(smallSocketBuffer); err != nil {
		t.Fatal(err)
	}
	head := "POST " + server.InitializeProcedure + " HTTP/1.1\r\nHost: " + addr +
		"\r\nContent-Type: " + contentType + "\r\nContent-Length: " + strconv.Itoa(hugeBodySize) + "\r\n\r\n"
	if _, err := io.WriteString(c, head); err != nil {
		t.Fatal(err)
	}
	var sent atomic.Int64
	var wg sync.WaitGroup
	defer wg.Wait() // runs after the c.Close below, which ends the copy
	defer c.Close()
	wg.Go(func() {
		// Written bytes are counted as each Write returns, so writes are
		// small; the copy ends with an error once the server has closed
		// the connection.
		_, _ = io.CopyBuffer(writeCounter{c, &sent}, body, make([]byte, 1<<10))
	})
	resp, err := http.ReadResponse(bufio.NewReader(c), nil)
	if err != nil {
		t.Fatalf("read response: %v (after %d body bytes)", err, sent.Load())
	}
	n := sent.Load()
	answer, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("read response body: %v", err)
	}
	return resp, answer, n
}

type writeCounter struct {
	w io.Writer
	n *atomic.Int64
}

func (w writeCounter) Write(p []byte) (int, error) {
	n, err := w.w.Write(p)
	w.n.Add(int64(n))
	return n, err
}

// h2cOversized sends one POST with body over h2c and returns the answer
// and how many body bytes the transport had taken when it arrived.
func h2cOversized(t *testing.T, addr, contentType string, body *hugeBody) (*http.Response, []byte, int64) {
	t.Helper()
	var protocols http.Protocols
	protocols.SetUnencryptedHTTP2(true)
	tr := &http.Transport{
		Protocols: &protocols,
		DialContext: func(ctx context.Context, network, addr string) (net.Conn, error) {
			c, err := (&net.Dialer{}).DialContext(ctx, network, addr)
			if tc, ok := c.(*net.TCPConn); ok && err == nil {
				err = tc.SetWriteBuffer(smallSocketBuffer)
			}
			return c, err
		},
	}
	t.Cleanup(tr.CloseIdleConnections)
	req, err := http.NewRequestWithContext(t.Context(), http.MethodPost, "http://"+addr+server.InitializeProcedure, body)
	if err != nil {
		t.Fatal(err)
	}
	req.ContentLength = hugeBodySize
	req.Header.Set("Content-Type", contentType)
	if strings.HasPrefix(contentType, "application/grpc") && !strings.HasPrefix(contentType, "application/grpc-web") {
		req.Header.Set("Te", "trailers")
	}
	resp, err := (&http.Client{Transport: tr}).Do(req)
	if err != nil {
		t.Fatalf("post: %v (after %d body bytes)", err, body.written.Load())
	}
	n := body.written.Load()
	defer resp.Body.Close()
	answer, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("read response body: %v", err)
	}
	return resp, answer, n
}

// TestOversizedBodyNotRead: a body far over the request cap is answered
// with resource_exhausted in every protocol once little more than the cap
// has been read, instead of being read (and thrown away) to its end first.
// The bound is on the bytes the client got to write, which the server's
// reading is what frees room for; transport buffers are kept small so the
// bound can be tight.
func TestOversizedBodyNotRead(t *testing.T) {
	t.Parallel()
	addr := serveSmallBuffers(t)
	// What may be in flight besides what the handler reads: socket
	// buffers on both sides (the kernel doubles the asked-for size), the
	// HTTP/2 stream window and the client's write buffers.
	const maxWritten = 32 * server.MaxRequestBytes
	tests := []struct {
		name        string
		h2c         bool
		contentType string
		// grpc: the answer is a gRPC or gRPC-Web status, not a Connect one.
		grpc bool
	}{
		{name: "grpc h2c", h2c: true, contentType: "application/grpc", grpc: true},
		{name: "grpc-web http1", contentType: "application/grpc-web+proto", grpc: true},
		{name: "grpc-web h2c", h2c: true, contentType: "application/grpc-web+proto", grpc: true},
		{name: "connect json http1", contentType: "application/json"},
		{name: "connect json h2c", h2c: true, contentType: "application/json"},
		{name: "connect proto http1", contentType: "application/proto"},
		{name: "connect proto h2c", h2c: true, contentType: "application/proto"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			body := newHugeBody(tt.grpc)
			send := http1Oversized
			if tt.h2c {
				send = h2cOversized
			}
			resp, answer, written := send(t, addr, tt.contentType, body)
			t.Logf("answered after %d body bytes", written)
			if tt.grpc {
				if got := grpcStatusOf(resp, answer); got != "8" {
					t.Errorf("HTTP %d, grpc-status %q, want 8 (resource_exhausted); body %q", resp.StatusCode, got, answer)
				}
			} else {
				var ce struct{ Code string }
				if err := json.Unmarshal(answer, &ce); err != nil || resp.StatusCode != http.StatusTooManyRequests || ce.Code != "resource_exhausted" {
					t.Errorf("HTTP %d %q, want 429 resource_exhausted", resp.StatusCode, answer)
				}
			}
			if written > maxWritten {
				t.Errorf("the client wrote %d body bytes before the answer, want at most %d (the cap is %d)",
					written, maxWritten, server.MaxRequestBytes)
			}
		})
	}
}

// grpcStatusOf finds grpc-status in a gRPC answer: in the headers of a
// trailers-only answer, in the trailers, or in a gRPC-Web trailer frame.
func grpcStatusOf(resp *http.Response, body []byte) string {
	if s := resp.Header.Get("Grpc-Status"); s != "" {
		return s
	}
	if s := resp.Trailer.Get("Grpc-Status"); s != "" {
		return s
	}
	return grpcWebTrailerStatus(body)
}
