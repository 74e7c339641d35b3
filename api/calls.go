package api

import (
	"errors"
	"fmt"
	"net/http"
	"sync"
	"sync/atomic"
	"time"

	"connectrpc.com/connect"
	"connectrpc.com/grpchealth"
	"github.com/rs/zerolog"
)

// DefaultMaxCalls is how many calls the API port serves at once, besides
// the watch and output streams ([DefaultMaxStreams] bounds those).
const DefaultMaxCalls = 1024

// reservedCalls is how many calls beyond the cap health checks and
// callers with the API token may make when no call can be evicted.
const reservedCalls = 32

// maxEvicting bounds the evicted calls whose handlers have not returned
// yet: under a flood the server may take a while to reset their streams,
// and each still holds its memory meanwhile. Beyond it, calls are refused
// until evicted ones return.
const maxEvicting = 64

// maxRefusing bounds the refusals being written at once: a refusal's body
// waits for the client's flow-control window like any answer. Beyond it a
// refused call's stream is reset without an answer.
const maxRefusing = 256

var errCalls = errors.New("the engine serves as many calls as it holds at once")

// callLimiter bounds the calls in flight on the API port, each of which
// holds a goroutine and its answer while its client does not read it. At
// the cap, a new call ends the call that has waited the longest for its
// client to accept a write (an HTTP/2 stream is reset): a client that
// never reads cannot keep anyone out. With none waiting, the call is
// refused with resource_exhausted, except health checks and calls with
// the API token, which may use a small reserve. It also applies the send
// timeout to every response. Safe for concurrent use.
type callLimiter struct {
	max         int
	sendTimeout time.Duration
	// exempt lists the paths bounded elsewhere (the stream limiter).
	exempt map[string]bool
	tokens tokenSource
	log    zerolog.Logger
	// errors writes refusals in each request's protocol; it is safe for
	// concurrent use, and costly to make per refusal.
	errors *connect.ErrorWriter

	refusing atomic.Int32

	mu sync.Mutex
	// calls holds every call in flight, streams included.
	calls    map[*deadlineWriter]*call
	held     int // counted calls in flight not evicted
	evicting int // counted calls evicted whose handlers have not returned
	evicted  uint64
	refused  uint64
	lastLog  time.Time
}

// call is one call in flight; its fields are guarded by the limiter's mu.
type call struct {
	peer    string // the client's address, one per connection
	counted bool   // under the cap (not a stream bounded elsewhere)
	evicted bool
}

func newCallLimiter(maxCalls int, sendTimeout time.Duration, tokens tokenSource, log zerolog.Logger, exempt ...string) *callLimiter {
	l := &callLimiter{max: maxCalls, sendTimeout: sendTimeout, exempt: make(map[string]bool), tokens: tokens, log: log,
		calls: make(map[*deadlineWriter]*call), errors: connect.NewErrorWriter()}
	for _, p := range exempt {
		l.exempt[p] = true
	}
	return l
}

// wrap returns h served under the limits.
func (l *callLimiter) wrap(h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		dw, ok := newDeadlineWriter(w, l.sendTimeout, func() {
			l.log.Debug().Str("peer", r.RemoteAddr).Str("path", r.URL.Path).Str("timeout", l.sendTimeout.String()).
				Msg("api response ended: the client accepted none of it in time")
		})
		if !ok {
			h.ServeHTTP(w, r)
			return
		}
		defer dw.stop()
		if r.Body != nil {
			r.Body = waitingBody{ReadCloser: r.Body, w: dw}
		}
		c := &call{peer: r.RemoteAddr, counted: !l.exempt[r.URL.Path]}
		if !c.counted {
			l.track(dw, c)
		} else if !l.acquire(dw, c, r) {
			l.refuse(dw, r)
			return
		}
		defer l.release(dw)
		h.ServeHTTP(dw, r)
	})
}

func (l *callLimiter) track(dw *deadlineWriter, c *call) {
	l.mu.Lock()
	l.calls[dw] = c
	l.mu.Unlock()
}

// acquire counts dw's call in, evicting a stalled call at the cap, or
// reports that it must be refused.
func (l *callLimiter) acquire(dw *deadlineWriter, c *call, r *http.Request) bool {
	// The privilege is checked only at the cap: it may stat the token file.
	if l.tryAcquire(dw, c, 0) || (l.privileged(r) && l.tryAcquire(dw, c, reservedCalls)) {
		return true
	}
	l.mu.Lock()
	l.refused++
	l.logLocked("api call limit reached, no call to end: call refused")
	l.mu.Unlock()
	return false
}

func (l *callLimiter) tryAcquire(dw *deadlineWriter, c *call, reserve int) bool {
	l.mu.Lock()
	if l.held < l.max {
		l.held++
		l.calls[dw] = c
		l.mu.Unlock()
		return true
	}
	var victim *deadlineWriter
	if l.evicting < maxEvicting {
		victim, _ = l.longestWaitingLocked(true)
	}
	switch {
	case victim != nil:
		// The victim's place is the new call's.
		l.calls[victim].evicted = true
		l.evicting++
		l.calls[dw] = c
		l.evicted++
		l.logLocked("api call limit reached: ended the call that waited the longest for its client")
		l.mu.Unlock()
		victim.evict()
		return true
	case l.held < l.max+reserve:
		l.held++
		l.calls[dw] = c
		l.mu.Unlock()
		return true
	default:
		l.mu.Unlock()
		return false
	}
}

// longestWaitingLocked returns the call not yet evicted (counted ones
// only, if counted) that has waited the longest for its client to accept
// a write or send its request, or nil if none is waiting. The scan costs
// a few microseconds at the default cap, and runs only at a cap.
func (l *callLimiter) longestWaitingLocked(counted bool) (*deadlineWriter, int64) {
	var victim *deadlineWriter
	var oldest int64
	for dw, c := range l.calls {
		since := dw.waitingSince.Load()
		if c.evicted || since == 0 || (counted && !c.counted) {
			continue
		}
		if victim == nil || since < oldest {
			victim, oldest = dw, since
		}
	}
	return victim, oldest
}

// longestWaitingPeer returns the client address (one per connection) of
// the call that has waited the longest for its client, streams included,
// and since when; ok is false if no call is waiting.
func (l *callLimiter) longestWaitingPeer() (peer string, since time.Time, ok bool) {
	l.mu.Lock()
	defer l.mu.Unlock()
	dw, oldest := l.longestWaitingLocked(false)
	if dw == nil {
		return "", time.Time{}, false
	}
	return l.calls[dw].peer, time.Unix(0, oldest), true
}

// stats returns the counted calls in flight (evicted ones aside), and
// how many calls were evicted and refused so far.
func (l *callLimiter) stats() (held int, evicted, refused uint64) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.held, l.evicted, l.refused
}

func (l *callLimiter) release(dw *deadlineWriter) {
	l.mu.Lock()
	defer l.mu.Unlock()
	switch c := l.calls[dw]; {
	case !c.counted:
	case c.evicted:
		l.evicting--
	default:
		l.held--
	}
	delete(l.calls, dw)
}

// privileged tells whether r may use the reserve: a health check, or a
// call with the API token.
func (l *callLimiter) privileged(r *http.Request) bool {
	if r.URL.Path == "/"+grpchealth.HealthV1ServiceName+"/Check" {
		return true
	}
	header := r.Header.Get("Authorization")
	return header != "" && checkBearer(header, l.tokens()) == nil
}

// refuse answers resource_exhausted in r's protocol, or resets the stream
// when maxRefusing refusals are being written already.
func (l *callLimiter) refuse(w http.ResponseWriter, r *http.Request) {
	if l.refusing.Add(1) > maxRefusing {
		l.refusing.Add(-1)
		panic(http.ErrAbortHandler)
	}
	defer l.refusing.Add(-1)
	err := connect.NewError(connect.CodeResourceExhausted, fmt.Errorf("%w (%d): retry later", errCalls, l.max))
	if l.errors.IsSupported(r) {
		_ = l.errors.Write(w, r, err)
		return
	}
	http.Error(w, err.Error(), http.StatusTooManyRequests)
}

func (l *callLimiter) logLocked(msg string) {
	now := time.Now()
	if now.Sub(l.lastLog) < 10*time.Second {
		return
	}
	l.lastLog = now
	l.log.Warn().Int("max_calls", l.max).Uint64("evicted", l.evicted).Uint64("refused", l.refused).Msg(msg)
}
