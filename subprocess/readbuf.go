package subprocess

import (
	"bufio"
	"net"
)

// readBufferedListener hands out connections whose reads go through a
// buffer of their own. net/http's HTTP/2 server reads every frame with two
// reads on the connection (its 9-byte header, then its payload), and the
// frames of a handshake arrive together: buffered, they cost one read(2)
// where they cost about ten. Everything but Read is the connection's own.
// The buffer is small: a handshake's frames take a few hundred bytes, the
// buffer lives as long as the connection, which can outlast the launch by
// the graceful shutdown, and a larger read goes past it to the
// connection.
type readBufferedListener struct{ net.Listener }

func (l readBufferedListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	return &readBufferedConn{Conn: c, r: bufio.NewReaderSize(c, readBufferSize)}, nil
}

const readBufferSize = 1 << 10

type readBufferedConn struct {
	net.Conn
	r *bufio.Reader
}

func (c *readBufferedConn) Read(b []byte) (int, error) { return c.r.Read(b) }
