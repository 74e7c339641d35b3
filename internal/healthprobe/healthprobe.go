// Package healthprobe is a client of a VM's grpc.health.v1.Health/Check:
// one HTTP/2 connection per VM, speaking just enough gRPC for that one
// call. A connect client cost about three times the CPU per probe
// (engine's BenchmarkProbeCost) and started goroutines for every
// connection and call: this one writes a request in one write, sends the
// acks the server asked for (grpc-go pings after every request it
// receives) with the next request, and starts no goroutine. The engine's
// liveness probe and `vmre doctor` use it.
package healthprobe

import (
	"bufio"
	"bytes"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"strconv"
	"sync"
	"time"

	"github.com/vmre/vmre"
	"golang.org/x/net/http2"
	"golang.org/x/net/http2/hpack"
	"google.golang.org/protobuf/encoding/protowire"
)

// Probe outcomes that are not a health status.
var (
	// ErrUnimplemented: the VM serves no grpc.health.v1 (gRPC status
	// UNIMPLEMENTED, or HTTP 404 from a server that routes by path).
	ErrUnimplemented = errors.New("unimplemented")
	// ErrTimeout: no answer within the probe's timeout.
	ErrTimeout = fmt.Errorf("probe: %w", context.DeadlineExceeded)
)

// checkProcedure is grpc.health.v1's Check method.
const checkProcedure = "/grpc.health.v1.Health/Check"

const (
	// maxHealthResponse bounds the response message: a status is 2 bytes.
	maxHealthResponse = 1 << 10
	// connWindow is the connection's receive window: each response takes
	// a few bytes of it, and it is topped up when half is used.
	connWindow = 1 << 30
)

// Conn probes one VM over one HTTP/2 connection, kept between probes and
// replaced after an error. Check is called by one probe at a time; Close
// may be called at any time, from any goroutine.
type Conn struct {
	addr   string // host:port
	tlsCfg *tls.Config
	// ctx ends at close, and with it a dial in progress.
	ctx    context.Context
	cancel context.CancelFunc

	mu     sync.Mutex
	conn   net.Conn // nil until the first check, and after an error
	closed bool

	// Used by check only.
	fr      *http2.Framer
	out     bytes.Buffer
	hbuf    bytes.Buffer
	henc    *hpack.Encoder
	stream  uint32 // the next stream id
	acks    []func() error
	used    int // connection window used since the last update
	message []byte
}

// New returns the probe client of the VM announced as vmAddr: h2c for
// "host:port", TLS with tlsCfg (nil: the system's roots) for a
// [vmre.TLSAddrPrefix] one. It dials at the first Check.
func New(vmAddr string, tlsCfg *tls.Config) *Conn {
	hostPort, isTLS := vmre.CutTLSAddr(vmAddr)
	h := &Conn{addr: hostPort}
	h.ctx, h.cancel = context.WithCancel(context.Background())
	if isTLS {
		if tlsCfg == nil {
			tlsCfg = &tls.Config{}
		}
		h.tlsCfg = tlsCfg.Clone()
		h.tlsCfg.NextProtos = []string{"h2"}
		if h.tlsCfg.ServerName == "" {
			h.tlsCfg.ServerName, _, _ = net.SplitHostPort(hostPort)
		}
	}
	return h
}

// Close closes the connection, and any Check in flight fails. Idempotent;
// later checks fail.
func (h *Conn) Close() {
	h.cancel()
	h.mu.Lock()
	defer h.mu.Unlock()
	h.closed = true
	if h.conn != nil {
		_ = h.conn.Close()
	}
}

// Check calls Health/Check (service "") and returns the serving status
// (grpc.health.v1's HealthCheckResponse.ServingStatus), blocking for at
// most timeout. It returns an error wrapping [ErrUnimplemented] when the
// VM serves no health service, [ErrTimeout] when the answer did not come
// in time, and the dial's error (syscall.ECONNREFUSED among its causes
// when nothing listens) or a protocol error otherwise. Every error but
// ErrUnimplemented ends the connection; the next Check dials again.
func (h *Conn) Check(timeout time.Duration) (int32, error) {
	deadline := time.Now().Add(timeout)
	status, err := h.checkOn(deadline)
	if err != nil && !errors.Is(err, ErrUnimplemented) {
		h.mu.Lock()
		if h.conn != nil {
			_ = h.conn.Close()
			h.conn = nil
		}
		h.mu.Unlock()
		var ne net.Error
		if errors.As(err, &ne) && ne.Timeout() {
			err = ErrTimeout
		}
	}
	return status, err
}

func (h *Conn) checkOn(deadline time.Time) (int32, error) {
	conn, err := h.connect(deadline)
	if err != nil {
		return 0, err
	}
	_ = conn.SetDeadline(deadline)
	// The deadline is a runtime timer that, left set, fires (a wake-up of
	// the engine) after every probe that beat it.
	defer func() { _ = conn.SetDeadline(time.Time{}) }()
	for _, ack := range h.acks {
		if err := ack(); err != nil {
			return 0, err
		}
	}
	h.acks = h.acks[:0]
	id := h.stream
	h.stream += 2
	h.hbuf.Reset()
	for _, f := range [...]hpack.HeaderField{
		{Name: ":method", Value: "POST"}, {Name: ":scheme", Value: h.scheme()}, {Name: ":path", Value: checkProcedure},
		{Name: ":authority", Value: h.addr}, {Name: "content-type", Value: "application/grpc"}, {Name: "te", Value: "trailers"},
	} {
		_ = h.henc.WriteField(f)
	}
	if err := h.fr.WriteHeaders(http2.HeadersFrameParam{StreamID: id, BlockFragment: h.hbuf.Bytes(), EndHeaders: true}); err != nil {
		return 0, err
	}
	// An empty HealthCheckRequest (service ""), uncompressed.
	if err := h.fr.WriteData(id, true, []byte{0, 0, 0, 0, 0}); err != nil {
		return 0, err
	}
	if _, err := conn.Write(h.out.Bytes()); err != nil {
		return 0, err
	}
	h.out.Reset()
	return h.read(id)
}

func (h *Conn) scheme() string {
	if h.tlsCfg != nil {
		return "https"
	}
	return "http"
}

// connect returns the connection, dialling it first if there is none; a
// new one's preface, settings and window are queued for the first write.
func (h *Conn) connect(deadline time.Time) (net.Conn, error) {
	h.mu.Lock()
	conn, closed := h.conn, h.closed
	h.mu.Unlock()
	if closed {
		return nil, net.ErrClosed
	}
	if conn != nil {
		return conn, nil
	}
	ctx, cancel := context.WithDeadline(h.ctx, deadline)
	defer cancel()
	var d net.Dialer
	conn, err := d.DialContext(ctx, "tcp", h.addr)
	if err != nil {
		return nil, err
	}
	if h.tlsCfg != nil {
		tc := tls.Client(conn, h.tlsCfg)
		if err := tc.HandshakeContext(ctx); err != nil {
			_ = conn.Close()
			return nil, err
		}
		if p := tc.ConnectionState().NegotiatedProtocol; p != "h2" {
			_ = conn.Close()
			return nil, fmt.Errorf("vm server over TLS offers %q, not h2", p)
		}
		conn = tc
	}
	h.mu.Lock()
	if h.closed {
		h.mu.Unlock()
		_ = conn.Close()
		return nil, net.ErrClosed
	}
	h.conn = conn
	h.mu.Unlock()

	h.out.Reset()
	h.fr = http2.NewFramer(&h.out, bufio.NewReaderSize(conn, 4096))
	h.fr.ReadMetaHeaders = hpack.NewDecoder(4096, nil)
	h.fr.MaxHeaderListSize = 64 << 10
	h.henc = hpack.NewEncoder(&h.hbuf)
	// No dynamic table: whatever table size the server allows, literal
	// fields are understood, and a request is a few dozen bytes anyway.
	h.henc.SetMaxDynamicTableSizeLimit(0)
	h.stream, h.used, h.acks = 1, 0, h.acks[:0]
	h.out.WriteString(http2.ClientPreface)
	if err := h.fr.WriteSettings(http2.Setting{ID: http2.SettingEnablePush, Val: 0}); err != nil {
		return nil, err
	}
	if err := h.fr.WriteWindowUpdate(0, connWindow-65535); err != nil {
		return nil, err
	}
	return conn, nil
}

// read reads frames until stream id ends and returns its outcome. The
// acks the server's frames ask for go out with the next request.
func (h *Conn) read(id uint32) (int32, error) {
	h.message = h.message[:0]
	httpStatus := ""
	for {
		f, err := h.fr.ReadFrame()
		if err != nil {
			return 0, err
		}
		switch f := f.(type) {
		case *http2.SettingsFrame:
			if !f.IsAck() {
				h.acks = append(h.acks, h.fr.WriteSettingsAck)
			}
		case *http2.PingFrame:
			if !f.IsAck() {
				data := f.Data
				h.acks = append(h.acks, func() error { return h.fr.WritePing(true, data) })
			}
		case *http2.GoAwayFrame:
			return 0, fmt.Errorf("vm server going away: %s", f.ErrCode)
		case *http2.RSTStreamFrame:
			if f.StreamID == id {
				return 0, fmt.Errorf("stream reset by the vm server: %s", f.ErrCode)
			}
		case *http2.DataFrame:
			h.used += int(f.Length)
			if h.used >= connWindow/2 {
				used := uint32(h.used)
				h.used = 0
				h.acks = append(h.acks, func() error { return h.fr.WriteWindowUpdate(0, used) })
			}
			if f.StreamID != id {
				continue
			}
			if len(h.message)+len(f.Data()) > maxHealthResponse {
				return 0, errors.New("health response too large")
			}
			h.message = append(h.message, f.Data()...)
			if f.StreamEnded() {
				return 0, errors.New("response without grpc-status")
			}
		case *http2.MetaHeadersFrame:
			if f.StreamID != id {
				continue
			}
			if s := f.PseudoValue("status"); s != "" {
				httpStatus = s
			}
			if !f.StreamEnded() {
				if httpStatus != "200" {
					return 0, httpError(httpStatus)
				}
				continue
			}
			return h.outcome(httpStatus, f)
		}
	}
}

// outcome reads the trailers (or the trailers-only response) f of a call
// whose headers said httpStatus.
func (h *Conn) outcome(httpStatus string, f *http2.MetaHeadersFrame) (int32, error) {
	if httpStatus != "200" {
		return 0, httpError(httpStatus)
	}
	var code, msg string
	for _, hf := range f.RegularFields() {
		switch hf.Name {
		case "grpc-status":
			code = hf.Value
		case "grpc-message":
			msg = hf.Value
		}
	}
	switch code {
	case "0":
	case "":
		return 0, errors.New("response without grpc-status")
	case "12":
		return 0, ErrUnimplemented
	default:
		return 0, fmt.Errorf("grpc status %s: %s", code, msg)
	}
	// One message: a flag byte (0: not compressed), its length, then a
	// HealthCheckResponse, whose status is field 1, a varint.
	m := h.message
	if len(m) < 5 || m[0] != 0 || int(uint32(m[1])<<24|uint32(m[2])<<16|uint32(m[3])<<8|uint32(m[4])) != len(m)-5 {
		return 0, errors.New("malformed health response")
	}
	m = m[5:]
	var status int32
	for len(m) > 0 {
		num, typ, n := protowire.ConsumeTag(m)
		if n < 0 {
			return 0, errors.New("malformed health response")
		}
		m = m[n:]
		if num == 1 && typ == protowire.VarintType {
			v, n := protowire.ConsumeVarint(m)
			if n < 0 {
				return 0, errors.New("malformed health response")
			}
			status, m = int32(v), m[n:]
			continue
		}
		if n = protowire.ConsumeFieldValue(num, typ, m); n < 0 {
			return 0, errors.New("malformed health response")
		}
		m = m[n:]
	}
	return status, nil
}

// httpError is the error of a non-200 answer: 404 from a server that
// routes by path means no health service there.
func httpError(status string) error {
	if status == "404" {
		return fmt.Errorf("%w: http status 404", ErrUnimplemented)
	}
	if _, err := strconv.Atoi(status); err != nil {
		return errors.New("response without an http status")
	}
	return errors.New("http status " + status)
}
