// Package connlimit caps the connections an [http.Server] holds open, so
// that a flood of idle connections cannot take every descriptor of the
// process: at the cap, the connection idle the longest (no request or
// HTTP/2 stream open) is closed to make room, and the new one is served.
// A plain limit would instead leave health probes and callers holding the
// API token waiting behind the flood. With [Listener.EvictBusy], a flood
// of busy connections whose clients stopped reading (or sending) is
// handled alike.
//
// Wrap the raw listener (a [tls.Listener] goes around it) and pass
// [Listener.ConnState] to the server:
//
//	lis := connlimit.New(raw, connlimit.DefaultMax(), log)
//	srv.ConnState = lis.ConnState
//	srv.Serve(tls.NewListener(lis, cfg)) // or srv.Serve(lis)
package connlimit

import (
	"container/list"
	"errors"
	"net"
	"net/http"
	"sync"
	"syscall"
	"time"

	"github.com/rs/zerolog"
)

// defaultMax is the most [DefaultMax] returns.
const defaultMax = 1024

// DefaultMax returns a cap that leaves half of the process's descriptor
// limit (RLIMIT_NOFILE) for everything else (plugins' pipes, handshake
// listeners, log files): half the limit, at most 1024 and at least 16.
func DefaultMax() int {
	n := nofile()
	if n <= 0 {
		return defaultMax
	}
	return max(16, min(defaultMax, n/2))
}

// Listener is a [net.Listener] that holds at most max connections. Its
// methods are safe for concurrent use.
type Listener struct {
	net.Listener
	max int
	log zerolog.Logger

	closed    chan struct{}
	closeOnce sync.Once

	mu sync.Mutex
	// open counts the connections accepted and not closed or evicted;
	// idle orders those that may be evicted (new, or idle), the longest
	// idle first.
	open    int
	held    map[*conn]struct{} // the connections counted in open
	idle    list.List          // of *conn
	evicted uint64
	refused uint64
	lastLog map[string]time.Time // by message
	// waiting, if set, names the busy connection to close at the cap.
	waiting func() (addr string, since time.Time, ok bool)
	busyAge time.Duration
}

// EvictBusy makes the listener, at its cap with no connection idle, close
// the connection of the client that waiting names (by its remote address)
// if that client has kept a call waiting for at least minWait, rather than
// the new connection: a client that opened a stream and stopped reading
// its answer (an HTTP/2 window of 0) or sending its request holds its
// connection busy for nothing. waiting is called without the listener's
// lock held; api.Handler.LongestWaitingPeer is one. It may be called
// at any time.
func (l *Listener) EvictBusy(waiting func() (addr string, since time.Time, ok bool), minWait time.Duration) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.waiting, l.busyAge = waiting, minWait
}

// New returns a Listener over inner that holds at most max connections
// (max > 0) and logs to log when it evicts or refuses one, each kind at
// most once every 10 s.
func New(inner net.Listener, maxConns int, log zerolog.Logger) *Listener {
	return &Listener{Listener: inner, max: maxConns, log: log, closed: make(chan struct{}),
		held: make(map[*conn]struct{}), lastLog: make(map[string]time.Time)}
}

// conn is an accepted connection; its fields are guarded by the
// listener's mu.
type conn struct {
	net.Conn
	l       *Listener
	elem    *list.Element // in l.idle, or nil while active
	counted bool          // still counted in l.open
}

// Close closes the connection and frees its place. Idempotent.
func (c *conn) Close() error {
	c.l.release(c)
	return c.Conn.Close()
}

// Accept waits for a connection, making room for it at the cap by closing
// the connection idle the longest; with none idle it closes the new one
// and waits for the next. When the process is out of descriptors it
// closes an idle connection and retries, backing off (5 ms doubling to
// 1 s) rather than spinning on a connection it cannot take.
func (l *Listener) Accept() (net.Conn, error) {
	var backoff time.Duration
	for {
		nc, err := l.Listener.Accept()
		if err != nil {
			if !errors.Is(err, syscall.EMFILE) && !errors.Is(err, syscall.ENFILE) {
				return nil, err
			}
			l.evictIdle("out of descriptors")
			backoff = min(max(2*backoff, 5*time.Millisecond), time.Second)
			select {
			case <-l.closed:
				return nil, net.ErrClosed
			case <-time.After(backoff):
			}
			continue
		}
		backoff = 0
		if c := l.admit(nc); c != nil {
			return c, nil
		}
		_ = nc.Close()
	}
}

// admit counts nc in, making room at the cap by closing the longest idle
// connection, or else the busy one EvictBusy names, or returns nil if no
// connection held may be closed.
func (l *Listener) admit(nc net.Conn) *conn {
	l.mu.Lock()
	var victim *conn
	if l.open >= l.max {
		victim = l.takeIdleLocked()
		if victim != nil {
			l.evicted++
			l.logLocked("connection limit reached: closed the connection idle the longest")
		} else if victim = l.takeWaitingLocked(); victim != nil {
			l.evicted++
			l.logLocked("connection limit reached, every connection busy: closed the one waiting the longest for its client")
		} else if l.open >= l.max {
			l.refused++
			l.logLocked("connection limit reached, every connection busy: new connection refused")
			l.mu.Unlock()
			return nil
		}
	}
	c := &conn{Conn: nc, l: l, counted: true}
	c.elem = l.idle.PushBack(c)
	l.open++
	l.held[c] = struct{}{}
	l.mu.Unlock()
	if victim != nil {
		_ = victim.Conn.Close()
	}
	return c
}

// takeWaitingLocked uncounts and returns the connection EvictBusy's
// function names, if it has waited long enough, or an idle one if one
// became idle meanwhile, or nil. It unlocks mu while it asks.
func (l *Listener) takeWaitingLocked() *conn {
	if l.waiting == nil {
		return nil
	}
	waiting, minWait := l.waiting, l.busyAge
	l.mu.Unlock()
	addr, since, ok := waiting()
	l.mu.Lock()
	if c := l.takeIdleLocked(); c != nil {
		return c
	}
	if !ok || time.Since(since) < minWait {
		return nil
	}
	return l.takeBusyLocked(addr)
}

// takeBusyLocked uncounts and returns the held connection whose remote
// address is addr, or nil.
func (l *Listener) takeBusyLocked(addr string) *conn {
	for c := range l.held {
		if c.counted && c.RemoteAddr().String() == addr {
			l.uncountLocked(c)
			return c
		}
	}
	return nil
}

// evictIdle closes the connection idle the longest, if any.
func (l *Listener) evictIdle(why string) {
	l.mu.Lock()
	victim := l.takeIdleLocked()
	if victim != nil {
		l.evicted++
		l.logLocked(why + ": closed the connection idle the longest")
	}
	l.mu.Unlock()
	if victim != nil {
		_ = victim.Conn.Close()
	}
}

// takeIdleLocked uncounts and returns the longest idle connection, or nil.
func (l *Listener) takeIdleLocked() *conn {
	front := l.idle.Front()
	if front == nil {
		return nil
	}
	c := front.Value.(*conn)
	l.uncountLocked(c)
	return c
}

// uncountLocked frees c's place.
func (l *Listener) uncountLocked(c *conn) {
	if c.elem != nil {
		l.idle.Remove(c.elem)
		c.elem = nil
	}
	if c.counted {
		c.counted = false
		l.open--
		delete(l.held, c)
	}
}

func (l *Listener) release(c *conn) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.uncountLocked(c)
}

func (l *Listener) logLocked(msg string) {
	now := time.Now()
	if now.Sub(l.lastLog[msg]) < 10*time.Second {
		return
	}
	l.lastLog[msg] = now
	l.log.Warn().Int("max_conns", l.max).Uint64("evicted", l.evicted).Uint64("refused", l.refused).Msg(msg)
}

// ConnState records which connections are idle; set it as the server's
// [http.Server.ConnState] (calling any other hook from it). A connection
// wrapped by the server (a [tls.Conn]) is unwrapped through its NetConn
// method.
func (l *Listener) ConnState(nc net.Conn, state http.ConnState) {
	c := l.find(nc)
	if c == nil {
		return
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	if !c.counted {
		return
	}
	switch state {
	case http.StateActive:
		if c.elem != nil {
			l.idle.Remove(c.elem)
			c.elem = nil
		}
	case http.StateIdle:
		if c.elem != nil {
			l.idle.MoveToBack(c.elem)
		} else {
			c.elem = l.idle.PushBack(c)
		}
	case http.StateHijacked, http.StateClosed:
		// A hijacked connection is its handler's: not evicted by
		// the server's rules, counted until it is closed.
		if c.elem != nil {
			l.idle.Remove(c.elem)
			c.elem = nil
		}
	}
}

func (l *Listener) find(nc net.Conn) *conn {
	for {
		if c, ok := nc.(*conn); ok && c.l == l {
			return c
		}
		u, ok := nc.(interface{ NetConn() net.Conn })
		if !ok {
			return nil
		}
		nc = u.NetConn()
	}
}

// Stats returns how many connections are held, and how many were evicted
// and refused so far.
func (l *Listener) Stats() (open int, evicted, refused uint64) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.open, l.evicted, l.refused
}

// Close closes the listener; held connections stay open (the server
// closes them).
func (l *Listener) Close() error {
	l.closeOnce.Do(func() { close(l.closed) })
	return l.Listener.Close()
}
