package h2unary

// A connection handed over to the fallback's server, and the listener
// that server accepts such connections from.

import (
	"encoding/binary"
	"net"
	"sync"

	"golang.org/x/net/http2"
)

// ReplayConn is a connection handed over: its reads return the bytes
// already read, then read on the connection. When h2unary has sent its
// SETTINGS, its reads leave out the client's first SETTINGS
// acknowledgement (of h2unary's SETTINGS, which the new server did not
// send) and its writes the new server's first (of the client's SETTINGS,
// which h2unary has acknowledged). Read must not be called concurrently
// with itself; Write may be.
type ReplayConn struct {
	net.Conn
	replay []byte
	in     ackFilter

	wmu sync.Mutex
	out ackFilter
}

// newReplayConn returns the ReplayConn of c that replays replay, what was
// read from the client preface on, and drops the acknowledgements if
// dropAck (h2unary has written its SETTINGS).
func newReplayConn(c net.Conn, replay []byte, dropAck bool) *ReplayConn {
	rc := &ReplayConn{Conn: c}
	if dropAck {
		rc.in = ackFilter{armed: true, skip: len(http2.ClientPreface)}
		rc.out = ackFilter{armed: true}
	}
	rc.replay = rc.in.filter(nil, replay)
	return rc
}

// Write writes b, without the acknowledgement to drop, if it is in b.
func (c *ReplayConn) Write(b []byte) (int, error) {
	c.wmu.Lock()
	defer c.wmu.Unlock()
	if !c.out.armed {
		return c.Conn.Write(b)
	}
	if _, err := c.Conn.Write(c.out.filter(nil, b)); err != nil {
		return 0, err
	}
	return len(b), nil
}

// Read reads what was read before the handover, then the connection,
// without the acknowledgement to drop.
func (c *ReplayConn) Read(b []byte) (int, error) {
	for len(c.replay) == 0 && c.in.armed {
		n, err := c.Conn.Read(b)
		c.replay = c.in.filter(c.replay, b[:n])
		if err != nil {
			// The stream ends here: a frame header held back is passed on.
			c.replay = append(c.replay, c.in.release()...)
			if len(c.replay) == 0 {
				return 0, err
			}
		}
	}
	if len(c.replay) > 0 {
		n := copy(b, c.replay)
		c.replay = c.replay[n:]
		return n, nil
	}
	return c.Conn.Read(b)
}

// ackFilter drops the first SETTINGS acknowledgement from a stream of
// HTTP/2 frames that comes in pieces of any size, while armed. It is not
// safe for concurrent use.
type ackFilter struct {
	armed bool
	skip  int // bytes to pass before the next frame header: a payload, or the client preface
	hdr   [frameHeaderLen]byte
	nhdr  int // bytes of a frame header held back until it is whole
}

// filter appends to dst the bytes of b, less the acknowledgement if it
// is there, and returns dst. A frame header that b cuts is held back
// until a later call completes it.
func (f *ackFilter) filter(dst, b []byte) []byte {
	for len(b) > 0 && f.armed {
		if f.skip > 0 {
			n := min(f.skip, len(b))
			dst = append(dst, b[:n]...)
			f.skip -= n
			b = b[n:]
			continue
		}
		n := copy(f.hdr[f.nhdr:], b)
		f.nhdr += n
		b = b[n:]
		if f.nhdr < frameHeaderLen {
			break
		}
		f.nhdr = 0
		if isSettingsAck(f.hdr) {
			f.armed = false
			continue
		}
		dst = append(dst, f.hdr[:]...)
		f.skip = int(f.hdr[0])<<16 | int(f.hdr[1])<<8 | int(f.hdr[2])
	}
	return append(dst, b...)
}

// release disarms f and returns the frame header bytes it holds back.
func (f *ackFilter) release() []byte {
	f.armed = false
	n := f.nhdr
	f.nhdr = 0
	return f.hdr[:n]
}

// isSettingsAck reports whether h is the header of a SETTINGS
// acknowledgement as the framer takes one: empty, on stream 0 (the
// reserved bit aside), other flags ignored.
func isSettingsAck(h [frameHeaderLen]byte) bool {
	return h[0] == 0 && h[1] == 0 && h[2] == 0 && http2.FrameType(h[3]) == http2.FrameSettings &&
		http2.Flags(h[4]).Has(http2.FlagSettingsAck) && binary.BigEndian.Uint32(h[5:])&(1<<31-1) == 0
}

// NetConn returns the connection c wraps.
func (c *ReplayConn) NetConn() net.Conn { return c.Conn }

// Listener is the listener of the fallback's server: its Accept returns
// the connections given to Put, one at a time. It is safe for concurrent
// use.
type Listener struct {
	conns     chan net.Conn
	closed    chan struct{}
	closeOnce sync.Once
}

// NewListener returns an open Listener.
func NewListener() *Listener {
	return &Listener{conns: make(chan net.Conn), closed: make(chan struct{})}
}

// Put blocks until an Accept has taken c and returns true, or returns
// false, c not taken, once l is closed.
func (l *Listener) Put(c net.Conn) bool {
	select {
	case l.conns <- c:
		return true
	case <-l.closed:
		return false
	}
}

// Accept returns the next connection given to Put, or net.ErrClosed once
// l is closed.
func (l *Listener) Accept() (net.Conn, error) {
	select {
	case c := <-l.conns:
		return c, nil
	case <-l.closed:
		return nil, net.ErrClosed
	}
}

// Close closes l; it is idempotent.
func (l *Listener) Close() error {
	l.closeOnce.Do(func() { close(l.closed) })
	return nil
}

// Addr returns the address of connections handed over, which have none
// of their own here.
func (l *Listener) Addr() net.Addr { return handedOverAddr{} }

type handedOverAddr struct{}

func (handedOverAddr) Network() string { return "h2unary" }
func (handedOverAddr) String() string  { return "handed-over" }
