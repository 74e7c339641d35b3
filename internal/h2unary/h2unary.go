// Package h2unary answers the one request a cleartext HTTP/2 connection
// with prior knowledge usually carries, a unary gRPC call, with a handler
// called in the connection's goroutine and its answer written at once, and
// hands every other connection to a net/http server, with the bytes it has
// read replayed.
//
// net/http's HTTP/2 server runs a connection with three goroutines, a
// fourth for the handler and one more for each flush, and writes each
// frame the handler sends as it comes; a call that is the only one on its
// connection pays for all of that. Here the handler is the one the
// net/http server would call, and its answer is framed as net/http frames
// it (the same frames, header fields in the same order, the same HPACK
// encoding; see [Conn]); what differs is the number of writes and
// goroutines.
package h2unary

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"io"
	"log"
	"net"
	"net/http"
	"net/url"
	"slices"
	"time"

	"golang.org/x/net/http2"
	"golang.org/x/net/http2/hpack"
)

// Server describes which calls to answer and how. Its fields must not
// change once ServeConn has been called; it is safe for concurrent use.
type Server struct {
	// Handler answers the calls this package serves; it should be the
	// handler the fallback serves, so that a call gets the same answer
	// either way.
	Handler http.Handler
	// Path is the one request path served here, and ContentTypes the
	// content types (exact values) served on it.
	Path         string
	ContentTypes []string
	// MaxMessageBytes bounds the gRPC message of a call served here;
	// a larger one goes to the fallback. It must leave a call's DATA
	// well inside HTTP/2's initial connection window of 64 KiB, which is
	// the fallback's too: the client's window is given back once a call
	// is answered.
	MaxMessageBytes int
	// Settings is the SETTINGS frame the server sends first. It must be
	// what the fallback's server sends, since a client may see both.
	Settings []http2.Setting
	// ReadTimeout bounds the wait for a connection's first request,
	// from the connection's start.
	ReadTimeout time.Duration
	// HandOver passes a connection to the fallback: c replays what has
	// been read before it reads on. It must not block for long.
	HandOver func(c *ReplayConn)
	// ErrorLog gets the line net/http's server logs when a client's
	// SETTINGS do not follow its preface in time; nil: the log package's
	// standard logger, as net/http.
	ErrorLog *log.Logger
}

// FirstSettingsTimeout is how long after its preface a client's SETTINGS
// may take, as net/http's HTTP/2 server allows.
const FirstSettingsTimeout = 2 * time.Second

// GoAwayLinger is how long a connection stays open after its GOAWAY for
// the client to close it, as net/http's HTTP/2 server waits.
const GoAwayLinger = time.Second

// ServeConn serves c and blocks until it is closed or handed over. If the
// connection's first request is a call this Server serves, it answers it,
// then answers PINGs, SETTINGS and further such calls, one at a time,
// until the client closes the connection, or sends anything else (a second
// stream while a call is being read among them), or drain is done; then
// it sends a GOAWAY naming the last answered stream, waits up to
// [GoAwayLinger] for the client to close, and closes c. A connection that
// sends anything else before its first answer (an HTTP/1.1 request,
// another path or content type, a frame the server would have to act on)
// is handed over with what has been read replayed, and ServeConn returns
// without closing it; one whose reads fail first, or that sends more
// than 256 KiB before its first answer, is closed. When ctx is
// done, c is closed at once. Requests' contexts derive from ctx.
//
// Before a handover at most the server's SETTINGS and the acknowledgement
// of the client's have been written, which the fallback's server writes
// again: the client sees the same settings twice and acknowledges both.
// The [ReplayConn] leaves out the client's first acknowledgement from what
// it reads and the fallback's acknowledgement of the client's SETTINGS
// from what it writes, so that each side gets one acknowledgement of each
// SETTINGS it sent.
func (s *Server) ServeConn(ctx, drain context.Context, c net.Conn) {
	conn := &Conn{s: s, c: c, ctx: ctx}
	// A close, not a read deadline: it also ends a write to a client that
	// does not read, and a read that c's own wrapper holds back (the
	// handshake's pacing of foreign connections). ServeConn returns only
	// once that close has returned.
	closed := make(chan struct{})
	stop := context.AfterFunc(ctx, func() { defer close(closed); _ = c.Close() })
	out := conn.serve(drain)
	if !stop() {
		<-closed
		return
	}
	if out == handOver {
		_ = c.SetReadDeadline(time.Time{})
		s.HandOver(newReplayConn(c, conn.rec.Bytes(), conn.wroteSettings))
		return
	}
	_ = c.Close()
}

var aLongTimeAgo = time.Unix(1, 0)

// Conn is one connection being served. The answer to a call is framed as
// net/http's HTTP/2 server (Go 1.26) frames it for a handler that flushes
// as connect-go's do: response HEADERS when the handler first flushes or
// returns (with content-length and content-type only when it has
// returned by then, a date unless the handler set one), then the body's
// DATA, then trailers as a HEADERS frame that ends the stream; header
// fields lowercased in sorted order, each HEADERS block encoded with the
// connection's one HPACK encoder.
type Conn struct {
	s   *Server
	c   net.Conn
	ctx context.Context
	rec bytes.Buffer // what the framer has read, while a handover is possible
	rd  *recorder
	fr  *http2.Framer
	out bytes.Buffer // frames to write
	enc *hpack.Encoder
	hb  bytes.Buffer // the header block being encoded

	peerWindow   uint32 // the client's SETTINGS_INITIAL_WINDOW_SIZE: each stream's send window
	peerMaxFrame uint32
	// sendWindow is the connection's send window: what the client's
	// WINDOW_UPDATEs on stream 0 grant, less the DATA sent.
	sendWindow int64
	// recv is the connection's receive window, as net/http's server
	// keeps it.
	recv inflow
	// wroteSettings: the server's SETTINGS and the acknowledgement of the
	// client's have been written.
	wroteSettings bool
	settingsAck   bool // the client has acknowledged the server's SETTINGS
	lastStream    uint32
}

// recorder keeps what a reader returns while on, and its last error.
// Once it has kept maxRecorded bytes, its reads fail with
// errRecordedTooMuch.
type recorder struct {
	r   io.Reader
	rec *bytes.Buffer
	on  bool
	err error
}

// maxRecorded bounds what a connection may send before its first answer,
// which is kept for a replay. The frames of one request take at most
// about 140 KiB here: a HEADERS frame of up to 64 KiB that the framer's
// header list limit lets through, and a DATA frame of up to 64 KiB past
// the message limit. Beyond that the client is sending frames that each
// make no progress (WINDOW_UPDATEs, empty DATA or CONTINUATION frames,
// frames of unknown types), which HTTP/2 allows without end and which
// would otherwise be kept until the read deadline.
const maxRecorded = 256 << 10

var errRecordedTooMuch = errors.New("h2unary: too much read before the first answer")

func (r *recorder) Read(b []byte) (int, error) {
	if r.on && r.rec.Len() >= maxRecorded {
		r.err = errRecordedTooMuch
		return 0, r.err
	}
	n, err := r.r.Read(b)
	if r.on {
		r.rec.Write(b[:n])
	}
	r.err = err
	return n, err
}

// outcome is how serve leaves a connection.
type outcome int

const (
	closeConn outcome = iota
	handOver
)

// serve runs the connection until it is to be closed or handed over.
func (c *Conn) serve(drain context.Context) outcome {
	deadline := time.Now().Add(c.s.ReadTimeout)
	_ = c.c.SetReadDeadline(deadline)
	switch c.readPreface() {
	case errNotPreface:
		return handOver
	case nil:
	default:
		return closeConn
	}
	rd := &recorder{r: c.c, rec: &c.rec, on: true}
	c.rd = rd
	c.fr = http2.NewFramer(&c.out, rd)
	c.fr.SetMaxReadFrameSize(maxFrameSize(c.s.Settings))
	c.fr.ReadMetaHeaders = hpack.NewDecoder(headerTableSize(c.s.Settings), nil)
	c.fr.MaxHeaderListSize = maxHeaderListSize(c.s.Settings)
	c.enc = hpack.NewEncoder(&c.hb)
	c.peerWindow, c.peerMaxFrame, c.sendWindow = initialWindow, 16384, initialWindow
	c.recv.avail = initialWindow
	// The client's SETTINGS follow its preface without waiting for the
	// server's: reading them first lets the server's SETTINGS and their
	// acknowledgement go out in one write, and nothing is written to a
	// connection handed over at its first frame.
	_ = c.c.SetReadDeadline(time.Now().Add(FirstSettingsTimeout))
	f, err := c.fr.ReadFrame()
	if rd.err != nil {
		var ne net.Error
		if errors.As(rd.err, &ne) && ne.Timeout() && c.ctx.Err() == nil {
			c.logf("timeout waiting for SETTINGS frames from %v", c.c.RemoteAddr())
		}
		return closeConn
	}
	if sf, ok := f.(*http2.SettingsFrame); err != nil || !ok || sf.IsAck() || !c.peerSettings(sf) {
		return handOver
	}
	_ = c.fr.WriteSettings(c.s.Settings...)
	_ = c.fr.WriteSettingsAck()
	if c.flush() != nil {
		return closeConn
	}
	c.wroteSettings = true
	_ = c.c.SetReadDeadline(deadline)
	req, ok := c.readCall(nil)
	if !ok {
		if rd.err != nil {
			return closeConn
		}
		return handOver
	}
	rd.on = false
	c.rec = bytes.Buffer{}
	c.answer(req)
	if c.flush() == nil {
		c.idle(drain)
	}
	return closeConn
}

func (c *Conn) logf(format string, args ...any) {
	if c.s.ErrorLog != nil {
		c.s.ErrorLog.Printf(format, args...)
	} else {
		log.Printf(format, args...)
	}
}

var errNotPreface = errors.New("h2unary: not the HTTP/2 client preface")

// readPreface reads the client preface, keeping what it read in c.rec:
// errNotPreface if the connection sent something else (HTTP/1.1, say),
// as soon as a byte differs.
func (c *Conn) readPreface() error {
	var b [len(http2.ClientPreface)]byte
	for n := 0; n < len(b); {
		m, err := c.c.Read(b[n:])
		c.rec.Write(b[n : n+m])
		if !bytes.Equal(b[n:n+m], []byte(http2.ClientPreface[n:n+m])) {
			return errNotPreface
		}
		n += m
		if err != nil && n < len(b) {
			return err
		}
	}
	return nil
}

const frameHeaderLen = 9

// call is a request read whole.
type call struct {
	stream uint32
	req    *http.Request
	body   []byte
	flow   int // what its DATA frames took of the connection's receive window
}

// readCall reads a call: HEADERS (hdrs, if the caller has read them
// already), then DATA ending the stream, with nothing else between but
// WINDOW_UPDATEs on stream 0, frames of unknown types and the
// acknowledgement of the server's SETTINGS. ok false: the connection
// sent something else, or failed.
func (c *Conn) readCall(hdrs *http2.MetaHeadersFrame) (cl call, ok bool) {
	for {
		var f http2.Frame
		if hdrs != nil && cl.req == nil {
			f = hdrs
		} else {
			var err error
			if f, err = c.fr.ReadFrame(); err != nil {
				return cl, false
			}
		}
		if sf, ok := f.(*http2.SettingsFrame); ok && sf.IsAck() && !c.settingsAck {
			c.settingsAck = true
			continue
		}
		switch f := f.(type) {
		case *http2.WindowUpdateFrame:
			if f.StreamID != 0 || !c.grantSend(f.Increment) {
				return cl, false
			}
		case *http2.UnknownFrame:
		case *http2.MetaHeadersFrame:
			if cl.req != nil || f.StreamEnded() || f.Truncated || f.StreamID <= c.lastStream || f.StreamID%2 == 0 {
				return cl, false
			}
			if cl.req = c.request(f); cl.req == nil {
				return cl, false
			}
			cl.stream = f.StreamID
		case *http2.DataFrame:
			if cl.req == nil || f.StreamID != cl.stream || len(cl.body)+len(f.Data()) > 5+c.s.MaxMessageBytes {
				return cl, false
			}
			cl.body = append(cl.body, f.Data()...)
			cl.flow += int(f.Length)
			if f.StreamEnded() {
				return cl, oneMessage(cl.body)
			}
		default:
			return cl, false
		}
	}
}

// initialWindow is HTTP/2's initial flow-control window of a connection
// and of a stream (RFC 9113, section 6.9.2).
const initialWindow = 1<<16 - 1

// grantSend adds a WINDOW_UPDATE's increment to the connection's send
// window; false if that takes it past HTTP/2's limit of 2^31-1.
func (c *Conn) grantSend(n uint32) bool {
	c.sendWindow += int64(n)
	return c.sendWindow <= 1<<31-1
}

// inflow is a receive window given back as net/http's server gives it:
// once what is to be given back reaches 4 KiB, or what the client has
// left.
type inflow struct {
	avail  int // what the client may send
	unsent int // what has been consumed and not yet given back
}

// giveBack returns n consumed bytes to the window, and the increment to
// send in a WINDOW_UPDATE now (0: none yet).
func (f *inflow) giveBack(n int) uint32 {
	f.unsent += n
	if f.unsent < 4<<10 && f.unsent < f.avail {
		return 0
	}
	inc := f.unsent
	f.avail += inc
	f.unsent = 0
	return uint32(inc)
}

// peerSettings applies the client's SETTINGS as net/http's server does
// (it ignores the header list limit); false for invalid ones, and for an
// initial window too small for any answer of the handler's.
func (c *Conn) peerSettings(f *http2.SettingsFrame) bool {
	ok := true
	_ = f.ForeachSetting(func(s http2.Setting) error {
		ok = ok && s.Valid() == nil
		switch s.ID {
		case http2.SettingInitialWindowSize:
			c.peerWindow = s.Val
			ok = ok && s.Val >= minPeerWindow
		case http2.SettingMaxFrameSize:
			c.peerMaxFrame = s.Val
		case http2.SettingHeaderTableSize:
			c.enc.SetMaxDynamicTableSize(s.Val)
		}
		return nil
	})
	return ok
}

// minPeerWindow is the least initial window a client may grant for its
// call to be answered here: room for any answer a chunk of the handler's
// output makes.
const minPeerWindow = handlerChunk + 5

// oneMessage reports whether body is one uncompressed gRPC message.
func oneMessage(body []byte) bool {
	return len(body) >= 5 && body[0] == 0 && int(binary.BigEndian.Uint32(body[1:5])) == len(body)-5
}

// request builds the request of a HEADERS frame as net/http would, or
// returns nil for one it does not serve here (see [Server]).
func (c *Conn) request(f *http2.MetaHeadersFrame) *http.Request {
	if f.PseudoValue("method") != http.MethodPost || f.PseudoValue("scheme") != "http" ||
		f.PseudoValue("path") != c.s.Path || f.PseudoValue("authority") == "" || f.PseudoValue("protocol") != "" {
		return nil
	}
	h := make(http.Header, len(f.Fields))
	for _, hf := range f.RegularFields() {
		switch hf.Name {
		case "connection", "proxy-connection", "keep-alive", "transfer-encoding", "upgrade",
			"host", "cookie", "content-length", "expect":
			return nil
		case "te":
			if hf.Value != "trailers" {
				return nil
			}
		}
		k := http.CanonicalHeaderKey(hf.Name)
		h[k] = append(h[k], hf.Value)
	}
	if ct := h["Content-Type"]; len(ct) != 1 || !slices.Contains(c.s.ContentTypes, ct[0]) {
		return nil
	}
	return &http.Request{
		Method:        http.MethodPost,
		URL:           &url.URL{Path: c.s.Path},
		Proto:         "HTTP/2.0",
		ProtoMajor:    2,
		Header:        h,
		ContentLength: -1,
		Host:          f.PseudoValue("authority"),
		RemoteAddr:    c.c.RemoteAddr().String(),
		RequestURI:    c.s.Path,
	}
}

// idle waits, once a call has been answered, for the client to close the
// connection, answering PINGs and SETTINGS meanwhile, and further calls
// of the kind this Server serves, one at a time; when drain is done or
// the client sends anything else, it sends a GOAWAY.
func (c *Conn) idle(drain context.Context) {
	// The deadline is cleared before the drain can set its own: a drain
	// that began during the call runs its function at once, on a goroutine
	// of its own, which must not run before the clear.
	_ = c.c.SetReadDeadline(time.Time{})
	stop := context.AfterFunc(drain, func() { _ = c.c.SetReadDeadline(aLongTimeAgo) })
	defer stop()
	if c.ctx.Err() != nil {
		return
	}
	for {
		f, err := c.fr.ReadFrame()
		if err != nil {
			if errors.Is(err, io.EOF) || c.ctx.Err() != nil {
				return
			}
			break
		}
		switch f := f.(type) {
		case *http2.PingFrame:
			if !f.IsAck() {
				_ = c.fr.WritePing(true, f.Data)
			}
		case *http2.SettingsFrame:
			if !f.IsAck() && c.peerSettings(f) {
				_ = c.fr.WriteSettingsAck()
			}
		case *http2.WindowUpdateFrame:
			if f.StreamID == 0 && !c.grantSend(f.Increment) {
				c.goAway()
				return
			}
		case *http2.RSTStreamFrame, *http2.PriorityFrame, *http2.UnknownFrame:
		case *http2.MetaHeadersFrame:
			cl, ok := c.readCall(f)
			if !ok {
				c.goAway()
				return
			}
			c.answer(cl)
		default:
			c.goAway()
			return
		}
		if c.flush() != nil {
			return
		}
	}
	c.goAway()
}

// goAway sends a GOAWAY and reads until the client closes, for at most
// GoAwayLinger.
func (c *Conn) goAway() {
	_ = c.fr.WriteGoAway(c.lastStream, http2.ErrCodeNo, nil)
	if c.flush() != nil {
		return
	}
	_ = c.c.SetReadDeadline(time.Now().Add(GoAwayLinger))
	if c.ctx.Err() != nil {
		return
	}
	_, _ = io.Copy(io.Discard, c.c)
}

func (c *Conn) flush() error {
	if c.out.Len() == 0 {
		return nil
	}
	_, err := c.c.Write(c.out.Bytes())
	c.out.Reset()
	return err
}

func maxFrameSize(ss []http2.Setting) uint32 {
	return setting(ss, http2.SettingMaxFrameSize, 16384)
}

func headerTableSize(ss []http2.Setting) uint32 {
	return setting(ss, http2.SettingHeaderTableSize, 4096)
}

func maxHeaderListSize(ss []http2.Setting) uint32 {
	return setting(ss, http2.SettingMaxHeaderListSize, 16<<20)
}

func setting(ss []http2.Setting, id http2.SettingID, def uint32) uint32 {
	for _, s := range ss {
		if s.ID == id {
			return s.Val
		}
	}
	return def
}
