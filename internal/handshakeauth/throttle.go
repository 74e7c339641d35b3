package handshakeauth

import (
	"context"
	"net"
	"sync/atomic"

	"golang.org/x/time/rate"
)

// A connection that has had a call refused as foreign (its socket is not
// the launched tree's) keeps the connection, and a flooder keeps calling
// on it. Each refusal is cheap, but thousands of connections calling as
// fast as they are answered keep the engine's run queues and the machine's
// CPUs busy while the plugin's own connection needs a few round trips. So
// after its first refusal a foreign connection's reads are paced: all such
// connections of one launch share foreignReadsPerSecond reads, and a read
// waiting its turn parks its goroutine (and, since its answers stop, the
// flooder's). A call with the launch's token is never refused, so a token
// holder is never paced.
const foreignReadsPerSecond = 200

// Listener returns ln with its connections prepared for pacing: serve
// them with an [http.Server] whose ConnContext is [ConnContext], and a
// connection whose call p refuses as foreign has its reads paced from
// then on. Closing a paced connection wakes a read waiting its turn.
func (p *Policy) Listener(ln net.Listener) net.Listener {
	return &pacedListener{Listener: ln, pace: p.pace}
}

// newPace returns the limiter the foreign connections of one launch
// share: one read every 1/foreignReadsPerSecond, first come first served,
// and no burst beyond one read.
func newPace() *rate.Limiter { return rate.NewLimiter(foreignReadsPerSecond, 1) }

// ConnContext is an [http.Server] ConnContext that lets the Policy find
// the connection of a call it refuses (see [Policy.Listener]).
func ConnContext(ctx context.Context, c net.Conn) context.Context {
	if pc, ok := c.(*pacedConn); ok {
		return context.WithValue(ctx, pacedConnKey{}, pc)
	}
	return ctx
}

type pacedConnKey struct{}

type pacedListener struct {
	net.Listener
	pace *rate.Limiter
}

func (l *pacedListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	open, closed := context.WithCancel(context.Background())
	return &pacedConn{Conn: c, pace: l.pace, open: open, closed: closed}, nil
}

type pacedConn struct {
	net.Conn
	pace    *rate.Limiter
	foreign atomic.Bool
	open    context.Context // done once the connection is closed
	closed  context.CancelFunc
}

func (c *pacedConn) Read(b []byte) (int, error) {
	if c.foreign.Load() && c.pace.Wait(c.open) != nil {
		return 0, net.ErrClosed
	}
	return c.Conn.Read(b)
}

// NetConn returns the connection under the pacing, as
// [crypto/tls.Conn.NetConn] does, for ConnContexts that look for it.
func (c *pacedConn) NetConn() net.Conn { return c.Conn }

func (c *pacedConn) Close() error {
	c.closed()
	return c.Conn.Close()
}

// markForeign paces the connection of the call whose context is ctx, if
// it came through a Listener.
func markForeign(ctx context.Context) {
	if c, ok := ctx.Value(pacedConnKey{}).(*pacedConn); ok {
		c.foreign.Store(true)
	}
}
