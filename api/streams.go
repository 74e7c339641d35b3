package api

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"sync"
	"sync/atomic"
	"time"

	"connectrpc.com/connect"
)

// Defaults of the stream bounds in [Config].
const (
	// DefaultMaxStreams is how many WatchRuntimes and TailOutput streams
	// the API serves at once, across all connections.
	DefaultMaxStreams = 64
	// DefaultMaxStreamsPerConn is how many of them one connection may
	// hold.
	DefaultMaxStreamsPerConn = 16
	// DefaultSendTimeout is how long a response may wait for the client to
	// accept the next bytes of it.
	DefaultSendTimeout = 30 * time.Second
)

// maxTailBytes bounds the output bytes that TailOutput's first messages
// (each a copy of the runtime's recent output) hold at once across all
// streams, counted as outputCost counts them; encoding a message holds
// about two more copies while it is written. One tail larger than the
// bound alone is still served.
const maxTailBytes = 8 << 20

var (
	errStreamsPerConn = errors.New("too many streams on this connection")
	errStreams        = errors.New("the engine serves as many watch and output streams as it holds at once")
	errTailBytes      = errors.New("the engine holds as much output not yet read by clients as it allows")
)

// streamLimiter counts the server streams open on each connection and in
// all, refusing those beyond the limits. It is safe for concurrent use.
type streamLimiter struct {
	maxTotal, maxPerConn int

	mu      sync.Mutex
	total   int
	perConn map[string]int // by the client's address, one per connection
}

func newStreamLimiter(maxTotal, maxPerConn int) *streamLimiter {
	return &streamLimiter{maxTotal: maxTotal, maxPerConn: maxPerConn, perConn: make(map[string]int)}
}

// acquire takes a slot for a stream of the connection from the client
// address conn, or returns a resource_exhausted error.
func (l *streamLimiter) acquire(conn string) (release func(), err error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	switch {
	case l.perConn[conn] >= l.maxPerConn:
		return nil, connect.NewError(connect.CodeResourceExhausted,
			fmt.Errorf("%w (%d): close one or open another connection", errStreamsPerConn, l.maxPerConn))
	case l.total >= l.maxTotal:
		return nil, connect.NewError(connect.CodeResourceExhausted,
			fmt.Errorf("%w (%d): retry later", errStreams, l.maxTotal))
	}
	l.perConn[conn]++
	l.total++
	var once sync.Once
	return func() {
		once.Do(func() {
			l.mu.Lock()
			defer l.mu.Unlock()
			l.total--
			if l.perConn[conn]--; l.perConn[conn] == 0 {
				delete(l.perConn, conn)
			}
		})
	}, nil
}

// interceptor refuses server streams beyond the limits before their
// request is read; other calls pass.
func (l *streamLimiter) interceptor() connect.Interceptor { return streamLimitInterceptor{l} }

type streamLimitInterceptor struct{ l *streamLimiter }

func (streamLimitInterceptor) WrapUnary(next connect.UnaryFunc) connect.UnaryFunc { return next }

func (streamLimitInterceptor) WrapStreamingClient(next connect.StreamingClientFunc) connect.StreamingClientFunc {
	return next
}

func (i streamLimitInterceptor) WrapStreamingHandler(next connect.StreamingHandlerFunc) connect.StreamingHandlerFunc {
	return func(ctx context.Context, conn connect.StreamingHandlerConn) error {
		if conn.Spec().StreamType != connect.StreamTypeServer {
			return next(ctx, conn)
		}
		release, err := i.l.acquire(conn.Peer().Addr)
		if err != nil {
			return err
		}
		defer release()
		return next(ctx, conn)
	}
}

// byteBudget hands out bytes up to a bound; one take larger than the bound
// succeeds when nothing else is held. It is safe for concurrent use.
type byteBudget struct {
	max int

	mu   sync.Mutex
	held int
}

// take reserves n bytes if the bound allows, without waiting: a caller
// waiting would hold what it came to send.
func (b *byteBudget) take(n int) bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.held > 0 && b.held+n > b.max {
		return false
	}
	b.held += n
	return true
}

func (b *byteBudget) give(n int) {
	b.mu.Lock()
	b.held -= n
	b.mu.Unlock()
}

// sendChunkBytes is how many bytes of a write must reach the client
// within the send timeout: a large message to a slow but reading client
// makes progress in chunks and is not ended.
const sendChunkBytes = 16 << 10

var errSendTimeout = errors.New("send timeout: the client accepted nothing in time")

// deadlineWriter is an http.ResponseWriter that ends the response when a
// flush or a chunk of a write takes longer than timeout. Writes and
// flushes come from the handler's goroutine only, as net/http requires.
type deadlineWriter struct {
	http.ResponseWriter
	flusher  http.Flusher
	rc       *http.ResponseController
	timeout  time.Duration
	onExpire func()

	timer   *time.Timer
	expired atomic.Bool
	// waitingSince is when the write, flush or request body read in
	// progress began (Unix nanoseconds), 0 between them: the call limiter
	// evicts the call that has waited the longest for its client.
	waitingSince atomic.Int64
}

func newDeadlineWriter(w http.ResponseWriter, timeout time.Duration, onExpire func()) (*deadlineWriter, bool) {
	flusher, ok := w.(http.Flusher)
	if !ok {
		return nil, false
	}
	return &deadlineWriter{ResponseWriter: w, flusher: flusher, rc: http.NewResponseController(w), timeout: timeout, onExpire: onExpire}, true
}

func (w *deadlineWriter) arm() {
	w.waitingSince.Store(time.Now().UnixNano())
	if w.timer == nil {
		w.timer = time.AfterFunc(w.timeout, w.expire)
		return
	}
	w.timer.Reset(w.timeout)
}

func (w *deadlineWriter) stop() {
	if w.timer != nil {
		w.timer.Stop()
	}
	w.waitingSince.Store(0)
}

// expire ends the response: a write deadline in the past resets an HTTP/2
// stream at once (waking a write blocked on flow control) and fails an
// HTTP/1.1 connection's blocked write.
func (w *deadlineWriter) expire() {
	if w.expired.Swap(true) {
		return
	}
	_ = w.rc.SetWriteDeadline(time.Now().Add(-time.Second))
	w.onExpire()
}

// evict ends the call as expire does, without blaming the send timeout,
// also waking a read of its request body. Safe to call from any
// goroutine.
func (w *deadlineWriter) evict() {
	if w.expired.Swap(true) {
		return
	}
	past := time.Now().Add(-time.Second)
	_ = w.rc.SetReadDeadline(past)
	_ = w.rc.SetWriteDeadline(past)
}

// waitingBody is a request body that records in its call's writer when a
// read is waiting for the client.
type waitingBody struct {
	io.ReadCloser
	w *deadlineWriter
}

func (b waitingBody) Read(p []byte) (int, error) {
	b.w.waitingSince.Store(time.Now().UnixNano())
	n, err := b.ReadCloser.Read(p)
	b.w.waitingSince.Store(0)
	return n, err
}

func (w *deadlineWriter) Write(p []byte) (int, error) {
	if w.expired.Load() {
		return 0, errSendTimeout
	}
	written := 0
	for written < len(p) {
		chunk := p[written:min(len(p), written+sendChunkBytes)]
		w.arm()
		n, err := w.ResponseWriter.Write(chunk)
		w.stop()
		written += n
		if err != nil {
			return written, err
		}
	}
	return written, nil
}

func (w *deadlineWriter) Flush() {
	if w.expired.Load() {
		return
	}
	w.arm()
	w.flusher.Flush()
	w.stop()
}

// Unwrap lets http.ResponseController reach the connection's writer.
func (w *deadlineWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }
