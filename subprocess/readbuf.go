package subprocess

import (
	"bufio"
	"context"
	"net"
	"sync"
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
// Each connection also tells when it has been closed (see connClosed), so
// that a stop can wait until the call that decided the handshake has had
// its answer. Everything else is the connection's own.
type handshakeListener struct{ net.Listener }

func (l handshakeListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	return &handshakeConn{Conn: c, r: bufio.NewReaderSize(c, readBufferSize), closed: make(chan struct{})}, nil
}

const readBufferSize = 1 << 10

type handshakeConn struct {
	net.Conn
	r         *bufio.Reader
	closed    chan struct{}
	closeOnce sync.Once
}

func (c *handshakeConn) Read(b []byte) (int, error) { return c.r.Read(b) }

func (c *handshakeConn) Close() error {
	c.closeOnce.Do(func() { close(c.closed) })
	return c.Conn.Close()
}

// connContext is the handshake server's ConnContext: it records the
// connection's closed channel for connClosed. c is a handshakeConn,
// possibly under wrappers that expose it through NetConn (as
// [crypto/tls.Conn] does).
func connContext(ctx context.Context, c net.Conn) context.Context {
	for {
		switch cc := c.(type) {
		case *handshakeConn:
			return context.WithValue(ctx, connClosedKey{}, (<-chan struct{})(cc.closed))
		case interface{ NetConn() net.Conn }:
			c = cc.NetConn()
		default:
			return ctx
		}
	}
}

type connClosedKey struct{}

// connClosed returns a channel closed once the server has closed the
// connection the call whose context is ctx arrived on: it closes a
// connection only once its last answer has been written, and an HTTP/2
// connection, after its GOAWAY, once the client has closed its side or
// after 1 s. Outside a handshake server's call it returns a closed
// channel.
func connClosed(ctx context.Context) <-chan struct{} {
	if c, ok := ctx.Value(connClosedKey{}).(<-chan struct{}); ok {
		return c
	}
	return closedChan
}
