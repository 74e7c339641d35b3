package handshakeauth

import (
	"context"
	"net"
	"sync"
	"sync/atomic"
	"time"
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
	return &pacedListener{Listener: ln, pace: &p.pace}
}

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
	pace *pacer
}

func (l *pacedListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	return &pacedConn{Conn: c, pace: l.pace, closed: make(chan struct{})}, nil
}

type pacedConn struct {
	net.Conn
	pace      *pacer
	foreign   atomic.Bool
	closed    chan struct{}
	closeOnce sync.Once
}

func (c *pacedConn) Read(b []byte) (int, error) {
	if c.foreign.Load() && !c.pace.wait(c.closed) {
		return 0, net.ErrClosed
	}
	return c.Conn.Read(b)
}

// NetConn returns the connection under the pacing, as
// [crypto/tls.Conn.NetConn] does, for ConnContexts that look for it.
func (c *pacedConn) NetConn() net.Conn { return c.Conn }

func (c *pacedConn) Close() error {
	c.closeOnce.Do(func() { close(c.closed) })
	return c.Conn.Close()
}

// markForeign paces the connection of the call whose context is ctx, if
// it came through a Listener.
func markForeign(ctx context.Context) {
	if c, ok := ctx.Value(pacedConnKey{}).(*pacedConn); ok {
		c.foreign.Store(true)
	}
}

// pacer hands out turns at a fixed interval to whoever asks, first come
// first served.
type pacer struct {
	mu   sync.Mutex
	next time.Time
}

// wait blocks until the caller's turn, or until stop is closed (then it
// returns false).
func (p *pacer) wait(stop <-chan struct{}) bool {
	const interval = time.Second / foreignReadsPerSecond
	p.mu.Lock()
	now := time.Now()
	if p.next.Before(now) {
		p.next = now
	}
	at := p.next
	p.next = p.next.Add(interval)
	p.mu.Unlock()
	d := time.Until(at)
	if d <= 0 {
		return true
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-stop:
		return false
	}
}
