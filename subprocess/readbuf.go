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
type readBufferedListener struct{ net.Listener }

func (l readBufferedListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	return &readBufferedConn{Conn: c, r: bufio.NewReader(c)}, nil
}

type readBufferedConn struct {
	net.Conn
	r *bufio.Reader
}

func (c *readBufferedConn) Read(b []byte) (int, error) { return c.r.Read(b) }
