package subprocess

import (
	"bytes"
	"context"
	"errors"
	"io"
	"log"
	"net"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"connectrpc.com/connect"
	handshakev1 "github.com/vmre/vmre/gen/vmre/handshake/v1"
	"github.com/vmre/vmre/internal/h2unary"
	"github.com/vmre/vmre/internal/handshakeauth"
	"github.com/vmre/vmre/server"
	"golang.org/x/net/http2"
	"google.golang.org/protobuf/proto"
)

// serveHandshake serves hs's handshake on ln until Bootstrap stops it
// accepting, then, after holdShutdown, lets the last answers out and shuts
// down, and returns once every connection has been closed.
//
// A grpc-go call of Initialize over h2c, what every plugin sends, is
// answered by h2unary with the shared handler, one goroutine and three
// writes per connection; anything else (HTTP/1.1, gRPC-Web, Connect,
// another path) goes to a net/http server made for the launch at its
// first such connection, which serves the same handler (see
// newFallbackServer).
//
// The shutdown sends each connection a GOAWAY and lasts until the plugin
// has closed its connections (net/http's server also polls for idle ones,
// on a timer starting at 1 ms and doubling) or the launch's handshake
// timeout, unless ctx ends first: supervise cancels ctx as soon as the
// process has been reaped, since nobody is left to read an answer, and
// Bootstrap once a failed handshake's answer is out (or its wait,
// defaultFailedAnswerWait, has passed), and the connections are then
// closed at once. Done waits for this function, so without that a Stop
// right after the handshake would wait for a plugin that holds a
// connection open mid-request. The bound is the handshake timeout, the
// budget the caller chose, because an answer still being written on a
// starved machine (many plugins starting at once) must not be cut.
func serveHandshake(ctx context.Context, hs *handshake, ln net.Listener, errLog *log.Logger, timeout time.Duration) {
	connsCtx, closeConns := context.WithCancel(ctx)
	defer closeConns()
	drain, startDrain := context.WithCancel(context.Background())
	defer startDrain()
	fb := &fallback{hs: hs, errLog: errLog}
	fast := &h2unary.Server{
		Handler:         grpcInitialize{next: http.HandlerFunc(serveShared)},
		Path:            server.InitializeProcedure,
		ContentTypes:    []string{"application/grpc", "application/grpc+proto"},
		MaxMessageBytes: server.MaxRequestBytes,
		Settings:        handshakeSettings,
		ReadTimeout:     timeout,
		HandOver:        fb.handOver,
		ErrorLog:        errLog,
	}
	base := context.WithValue(connsCtx, handshakeKey{}, hs)
	var conns sync.WaitGroup
	var backoff time.Duration
	for {
		c, err := ln.Accept()
		if err != nil {
			// As net/http's Serve: out of descriptors, wait and retry.
			if errors.Is(err, syscall.EMFILE) || errors.Is(err, syscall.ENFILE) {
				backoff = min(max(2*backoff, 5*time.Millisecond), time.Second)
				time.Sleep(backoff)
				continue
			}
			break
		}
		backoff = 0
		conns.Add(1)
		go func() {
			defer conns.Done()
			fast.ServeConn(handshakeConnContext(base, c), drain, c)
		}()
	}
	_ = ln.Close()
	hs.holdShutdown(ctx)
	bound := time.AfterFunc(timeout, closeConns)
	defer bound.Stop()
	startDrain()
	conns.Wait()
	fb.shutdown(connsCtx)
}

// grpcInitialize is the handler of the calls h2unary answers: gRPC
// Initialize calls of one uncompressed message. One that decodes and is
// valid, and sets no grpc-encoding and no grpc-timeout but a plain one of
// a second or more (grpc-go sends its deadline), it answers itself as
// the shared Connect handler would (authorize, then the launch's
// handshake; the same headers, trailers, status and message, in the same
// writes and flushes); it passes any other to next, that handler, which
// then finds it refused before anything has happened that it does again.
type grpcInitialize struct{ next http.Handler }

// serveShared serves r with the shared handler, built at the first call
// grpcInitialize passes on: a process whose plugins all send gRPC
// Initialize over h2c never builds it (the Connect handler, its
// descriptors and mux).
func serveShared(w http.ResponseWriter, r *http.Request) {
	sharedHandler().ServeHTTP(w, r)
}

// grpcCallHeaderKey carries the request header of a call grpcInitialize
// answers, for sentToken (the Connect handler's calls carry a CallInfo).
type grpcCallHeaderKey struct{}

func (g grpcInitialize) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	body, err := io.ReadAll(r.Body) // h2unary's, in memory, bounded
	var req handshakev1.InitializeRequest
	timeout, timeoutOK := grpcTimeout(r.Header["Grpc-Timeout"])
	if err != nil || r.Header["Grpc-Encoding"] != nil || !timeoutOK ||
		len(body) < 5 || body[0] != 0 || proto.Unmarshal(body[5:], &req) != nil ||
		server.ValidateRequest(req.GetProtocolVersion(), req.GetAddr()) != nil {
		r.Body = io.NopCloser(bytes.NewReader(body))
		g.next.ServeHTTP(w, r)
		return
	}
	h := w.Header()
	h["Content-Type"] = []string{r.Header.Get("Content-Type")}
	h["Grpc-Accept-Encoding"] = []string{""} // no compression, as the Connect handler is set up
	ctx := context.WithValue(r.Context(), grpcCallHeaderKey{}, r.Header)
	if timeout > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, timeout)
		defer cancel()
	}
	err = authorizeLaunch(ctx, server.Call{PeerAddr: r.RemoteAddr, Header: r.Header})
	if err == nil {
		err = launchInitializer{}.Initialize(ctx, req.GetProtocolVersion(), req.GetAddr())
	}
	flusher := w.(http.Flusher)
	if err != nil {
		code, msg := server.CodeOf(err), err.Error()
		if ce := new(connect.Error); errors.As(err, &ce) {
			code, msg = ce.Code(), ce.Message()
		}
		h.Add(http.TrailerPrefix+"Grpc-Status", strconv.Itoa(int(code)))
		h.Add(http.TrailerPrefix+"Grpc-Message", grpcPercentEncode(msg))
		flusher.Flush()
		return
	}
	_, _ = w.Write([]byte{0, 0, 0, 0, 0}) // google.protobuf.Empty, enveloped
	flusher.Flush()
	h.Add(http.TrailerPrefix+"Grpc-Status", "0")
	flusher.Flush()
}

// grpcTimeout parses a grpc-timeout header as connect-go does, for the
// values grpc-go sends (the time left to a deadline, 8 digits at most and
// a unit): 0 if there is none; ok false for one that is not plain, or
// under a second, which the Connect handler is left to answer.
func grpcTimeout(values []string) (d time.Duration, ok bool) {
	if len(values) == 0 {
		return 0, true
	}
	v := values[0]
	if len(values) > 1 || len(v) < 2 || len(v) > 9 {
		return 0, false
	}
	unit, ok := map[byte]time.Duration{'H': time.Hour, 'M': time.Minute, 'S': time.Second,
		'm': time.Millisecond, 'u': time.Microsecond, 'n': time.Nanosecond}[v[len(v)-1]]
	if !ok {
		return 0, false
	}
	var n int64
	for _, c := range []byte(v[:len(v)-1]) {
		if c < '0' || c > '9' {
			return 0, false
		}
		n = 10*n + int64(c-'0')
	}
	d = time.Duration(n) * unit
	return d, d >= time.Second
}

// grpcPercentEncode encodes a grpc-message value as gRPC (and connect-go)
// do: bytes outside ' '..'~', and '%', as %XX.
func grpcPercentEncode(msg string) string {
	var b strings.Builder
	for i := range len(msg) {
		if c := msg[i]; c < ' ' || c > '~' || c == '%' {
			b.WriteByte('%')
			b.WriteByte("0123456789ABCDEF"[c>>4])
			b.WriteByte("0123456789ABCDEF"[c&15])
		} else {
			b.WriteByte(c)
		}
	}
	return b.String()
}

// handshakeConnContext adds to ctx what a handshake call's handlers look
// up about its connection c: the handshake-auth pacing and the connection
// for answerRead.
func handshakeConnContext(ctx context.Context, c net.Conn) context.Context {
	return connContext(handshakeauth.ConnContext(ctx, c), c)
}

// handshakeSettings is the SETTINGS frame newFallbackServer's HTTP/2
// connections start with; h2unary sends the same, so that a client whose
// connection is handed over sees one set of settings. A test compares
// them.
var handshakeSettings = []http2.Setting{
	{ID: http2.SettingMaxFrameSize, Val: 1 << 16},
	{ID: http2.SettingMaxConcurrentStreams, Val: server.MaxConcurrentStreams},
	{ID: http2.SettingMaxHeaderListSize, Val: server.MaxHeaderBytes + 10*32},
	{ID: http2.SettingHeaderTableSize, Val: 4096},
	{ID: http2.SettingInitialWindowSize, Val: 1 << 20},
}

// fallback is the net/http server of the connections h2unary hands over,
// made at the first one.
type fallback struct {
	hs     *handshake
	errLog *log.Logger

	mu     sync.Mutex
	srv    *http.Server
	ln     *h2unary.Listener
	closed bool
	conns  sync.WaitGroup // handed-over connections not yet closed
	served chan struct{}  // closed when Serve has returned
}

// handOver serves c with the fallback server, or closes it once the
// server is shutting down.
func (f *fallback) handOver(c *h2unary.ReplayConn) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.closed {
		_ = c.Close()
		return
	}
	if f.srv == nil {
		f.srv = newFallbackServer(f.hs)
		f.srv.ErrorLog = f.errLog
		// StateClosed or StateHijacked is reported as a connection's
		// goroutine ends; the Add comes before the connection is queued.
		f.srv.ConnState = func(_ net.Conn, state http.ConnState) {
			if state == http.StateClosed || state == http.StateHijacked {
				f.conns.Done()
			}
		}
		f.ln = h2unary.NewListener()
		f.served = make(chan struct{})
		go func() { defer close(f.served); _ = f.srv.Serve(f.ln) }()
	}
	f.conns.Add(1)
	// Serve accepts until shutdown, which waits for f.mu: Put fails only
	// if that changes.
	if !f.ln.Put(c) {
		f.conns.Done()
		_ = c.Close()
	}
}

// shutdown shuts the fallback server down gracefully, and at once when
// ctx ends, and returns once its connections are closed.
func (f *fallback) shutdown(ctx context.Context) {
	f.mu.Lock()
	f.closed = true
	srv := f.srv
	f.mu.Unlock()
	if srv == nil {
		return
	}
	if err := srv.Shutdown(ctx); err != nil {
		_ = srv.Close()
	}
	<-f.served
	f.conns.Wait()
}

// newFallbackServer returns the net/http server of one launch's
// handshake connections that h2unary does not answer, which passes hs to
// the shared handler through every request's context.
//
// Its HTTP/2 connections keep the protocol's initial 64 KiB receive window
// instead of net/http's 1 MiB: a handshake request is at most a few KiB
// (server.MaxRequestBytes), and the larger window costs a WINDOW_UPDATE
// frame, with a flush of its own, on every connection.
func newFallbackServer(hs *handshake) *http.Server {
	srv := server.NewHTTPServer(sharedHandler())
	srv.HTTP2.MaxReceiveBufferPerConnection = initialWindowSize
	srv.BaseContext = func(net.Listener) context.Context {
		return context.WithValue(context.Background(), handshakeKey{}, hs)
	}
	srv.ConnContext = func(ctx context.Context, c net.Conn) context.Context {
		if rc, ok := c.(*h2unary.ReplayConn); ok {
			c = rc.NetConn()
		}
		return handshakeConnContext(ctx, c)
	}
	return srv
}

// initialWindowSize is HTTP/2's initial flow-control window (RFC 9113,
// section 6.9.2): a connection starts with it without a WINDOW_UPDATE.
const initialWindowSize = 1<<16 - 1
