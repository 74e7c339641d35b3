// Package h2raw is a cleartext HTTP/2 client driven frame by frame, for
// tests and the bench program to attack vmre's own servers the way a
// hostile local client would: streams opened on a connection whose
// flow-control window stays at 0 (the server can send them nothing), or
// connections that send the preface and SETTINGS and then nothing.
package h2raw

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"net"
	"sync"
	"time"

	"golang.org/x/net/http2"
	"golang.org/x/net/http2/hpack"
)

// Event is what the server sent on one stream.
type Event struct {
	Stream uint32
	// Kind is "headers", "data", "rst", or on Stream 0 "settings" (the
	// server's, not its acknowledgements) or "goaway".
	Kind string
	// Status is the HTTP status of response headers and GRPCStatus the
	// grpc-status they carry ("" if none: the call is under way).
	Status, GRPCStatus string
	// EndStream is set on headers or data that end the stream.
	EndStream bool
	// Code is the RST_STREAM or GOAWAY error code.
	Code http2.ErrCode
	// Fields are the header fields of headers, Data the payload of data,
	// Settings the settings of "settings".
	Fields   []hpack.HeaderField
	Data     []byte
	Settings []http2.Setting
}

// Conn is one HTTP/2 connection. Its methods are safe for concurrent use.
type Conn struct {
	conn   net.Conn
	events chan Event

	mu     sync.Mutex // guards the writes below
	fr     *http2.Framer
	hbuf   bytes.Buffer
	henc   *hpack.Encoder
	nextID uint32

	closeOnce sync.Once
	closed    chan struct{}
}

// Dial connects to addr, sends the client preface and a SETTINGS frame
// with SETTINGS_INITIAL_WINDOW_SIZE window, and acknowledges the server's
// SETTINGS. With window 0 the server can send no DATA on any stream, and
// since the client never sends WINDOW_UPDATE, never will. Events carries
// up to buffer events; past that the connection stops reading, as a
// client that does not read at all.
func Dial(addr string, window uint32, buffer int) (*Conn, error) {
	nc, err := net.DialTimeout("tcp", addr, 30*time.Second)
	if err != nil {
		return nil, fmt.Errorf("dial %s: %w", addr, err)
	}
	c := &Conn{conn: nc, events: make(chan Event, buffer), nextID: 1, closed: make(chan struct{})}
	c.fr = http2.NewFramer(nc, nc)
	c.fr.ReadMetaHeaders = hpack.NewDecoder(4096, nil)
	c.fr.MaxHeaderListSize = 1 << 20
	c.henc = hpack.NewEncoder(&c.hbuf)
	if _, err := nc.Write([]byte(http2.ClientPreface)); err != nil {
		_ = nc.Close()
		return nil, fmt.Errorf("write preface: %w", err)
	}
	if err := c.fr.WriteSettings(http2.Setting{ID: http2.SettingInitialWindowSize, Val: window}); err != nil {
		_ = nc.Close()
		return nil, fmt.Errorf("write settings: %w", err)
	}
	go c.read()
	return c, nil
}

// Events delivers what the server sends, in order; it is closed when the
// connection ends.
func (c *Conn) Events() <-chan Event { return c.events }

// Close closes the connection and ends Events; calls after the first
// return [net.ErrClosed].
func (c *Conn) Close() error {
	err := net.ErrClosed
	c.closeOnce.Do(func() {
		close(c.closed)
		err = c.conn.Close()
	})
	return err
}

func (c *Conn) read() {
	defer close(c.events)
	for {
		f, err := c.fr.ReadFrame()
		if err != nil {
			return
		}
		var ev Event
		switch f := f.(type) {
		case *http2.SettingsFrame:
			if f.IsAck() {
				continue
			}
			c.mu.Lock()
			_ = c.fr.WriteSettingsAck()
			c.mu.Unlock()
			ev = Event{Kind: "settings"}
			_ = f.ForeachSetting(func(s http2.Setting) error { ev.Settings = append(ev.Settings, s); return nil })
		case *http2.PingFrame:
			if !f.IsAck() {
				c.mu.Lock()
				_ = c.fr.WritePing(true, f.Data)
				c.mu.Unlock()
			}
			continue
		case *http2.MetaHeadersFrame:
			ev = Event{Stream: f.StreamID, Kind: "headers", Status: f.PseudoValue("status"), EndStream: f.StreamEnded(), Fields: f.Fields}
			for _, hf := range f.RegularFields() {
				if hf.Name == "grpc-status" {
					ev.GRPCStatus = hf.Value
				}
			}
		case *http2.DataFrame:
			ev = Event{Stream: f.StreamID, Kind: "data", EndStream: f.StreamEnded(), Data: bytes.Clone(f.Data())}
		case *http2.RSTStreamFrame:
			ev = Event{Stream: f.StreamID, Kind: "rst", Code: f.ErrCode}
		case *http2.GoAwayFrame:
			ev = Event{Kind: "goaway", Code: f.ErrCode}
		default:
			continue
		}
		select {
		case c.events <- ev:
		case <-c.closed:
			return
		}
	}
}

// OpenGRPC opens a stream calling the gRPC method path with one request
// message msg (its protobuf encoding) and returns the stream's id.
func (c *Conn) OpenGRPC(authority, path string, msg []byte) (uint32, error) {
	body := make([]byte, 5+len(msg))
	binary.BigEndian.PutUint32(body[1:5], uint32(len(msg)))
	copy(body[5:], msg)
	return c.Open([]hpack.HeaderField{
		{Name: ":method", Value: "POST"}, {Name: ":scheme", Value: "http"}, {Name: ":authority", Value: authority},
		{Name: ":path", Value: path}, {Name: "content-type", Value: "application/grpc"}, {Name: "te", Value: "trailers"},
	}, body)
}

// Open opens a stream with the given header fields, in order, and body
// (none if nil: the HEADERS frame ends the stream), and returns the
// stream's id.
func (c *Conn) Open(fields []hpack.HeaderField, body []byte) (uint32, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	id := c.nextID
	c.nextID += 2
	c.hbuf.Reset()
	for _, hf := range fields {
		if err := c.henc.WriteField(hf); err != nil {
			return 0, fmt.Errorf("encode headers: %w", err)
		}
	}
	if err := c.fr.WriteHeaders(http2.HeadersFrameParam{StreamID: id, BlockFragment: c.hbuf.Bytes(), EndHeaders: true, EndStream: body == nil}); err != nil {
		return 0, fmt.Errorf("write headers: %w", err)
	}
	if body == nil {
		return id, nil
	}
	if err := c.fr.WriteData(id, true, body); err != nil {
		return 0, fmt.Errorf("write data: %w", err)
	}
	return id, nil
}
