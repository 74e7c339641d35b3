package subprocess

import (
	"bufio"
	"context"
	"io"
	"net"
	"sync"
	"sync/atomic"
	"time"
)

// handshakeListener hands out the handshake server's connections. Their
// reads go through a buffer of their own: net/http's HTTP/2 server reads
// every frame with two reads on the connection (its 9-byte header, then
// its payload), and the frames of a handshake arrive together: buffered,
// they cost one read(2) where they cost about ten. The buffer is small: a
// handshake's frames take a few hundred bytes, the buffer lives as long as
// the connection, which can outlast the launch by the graceful shutdown,
// and a larger read goes past it to the connection.
//
// Each connection also tells when the client has read everything the
// server wrote on it (see answerRead), so that a stop can wait until the
// call that decided the handshake has had its answer. Everything else is
// the connection's own.
type handshakeListener struct {
	net.Listener
	// A half-closed connection (see handshakeConn.Close) waits for the
	// client's side for at most linger, or until ctx ends; helpers counts
	// that wait.
	ctx     context.Context
	helpers *sync.WaitGroup
	linger  time.Duration
}

func (l *handshakeListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	return &handshakeConn{Conn: c, r: bufio.NewReaderSize(c, readBufferSize), l: l, closed: make(chan struct{})}, nil
}

const readBufferSize = 1 << 10

type handshakeConn struct {
	net.Conn
	r         *bufio.Reader
	l         *handshakeListener
	halfClose atomic.Bool // set by answerRead
	closed    chan struct{}
	closeOnce sync.Once
}

func (c *handshakeConn) Read(b []byte) (int, error) { return c.r.Read(b) }

// Close closes the connection and then closed; later calls do nothing.
// With halfClose set it only ends the server's side (a FIN after
// everything written) and returns: the connection is closed, and closed
// with it, once the client has closed its side too, or after l.linger, or
// when l.ctx ends. Bytes the client sends meanwhile are read and dropped,
// so the kernel answers no RST that could discard the answer before the
// client has read it.
func (c *handshakeConn) Close() error {
	err := net.ErrClosed
	c.closeOnce.Do(func() {
		if cw, ok := c.Conn.(interface{ CloseWrite() error }); ok && c.halfClose.Load() && cw.CloseWrite() == nil {
			// Close runs on the server's goroutines, which serveHandshake
			// waits for, itself a helper: the Add comes before the Wait.
			c.l.helpers.Add(1)
			go c.awaitClient()
			err = nil
			return
		}
		err = c.Conn.Close()
		close(c.closed)
	})
	return err
}

// awaitClient reads what the client sends after the server's FIN until
// its own FIN (or an error, or the deadline), then closes the connection.
func (c *handshakeConn) awaitClient() {
	defer c.l.helpers.Done()
	_ = c.Conn.SetReadDeadline(time.Now().Add(c.l.linger))
	stop := context.AfterFunc(c.l.ctx, func() { _ = c.Conn.SetReadDeadline(time.Unix(1, 0)) })
	_, _ = io.Copy(io.Discard, c.Conn)
	stop()
	_ = c.Conn.Close()
	close(c.closed)
}

// connContext is the handshake server's ConnContext: it records the
// connection for answerRead. c is a handshakeConn, possibly under wrappers
// that expose it through NetConn (as [crypto/tls.Conn] does).
func connContext(ctx context.Context, c net.Conn) context.Context {
	for {
		switch cc := c.(type) {
		case *handshakeConn:
			return context.WithValue(ctx, handshakeConnKey{}, cc)
		case interface{ NetConn() net.Conn }:
			c = cc.NetConn()
		default:
			return ctx
		}
	}
}

type handshakeConnKey struct{}

// answerRead returns a channel closed once the client of the call whose
// context is ctx has closed that call's connection: an HTTP/2 client
// closes it on the server's GOAWAY once its reader has the answer, vmre's
// client once its call has returned. When the server closes the connection
// first (net/http closes an idle HTTP/1.1 connection at once on shutdown,
// an HTTP/2 one 1 s after its GOAWAY), that close only ends the server's
// side, and the channel waits for the client's close, which comes after
// it has read the answer. Outside a handshake server's call it returns a
// closed channel.
func answerRead(ctx context.Context) <-chan struct{} {
	c, ok := ctx.Value(handshakeConnKey{}).(*handshakeConn)
	if !ok {
		return closedChan
	}
	c.halfClose.Store(true)
	return c.closed
}
