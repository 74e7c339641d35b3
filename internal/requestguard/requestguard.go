// Package requestguard puts the request checks vmre's connect-go handlers
// share in front of them: readable answers to a wrong content type, and a
// bound on how much of a request body is read.
package requestguard

import (
	"compress/gzip"
	"encoding/json"
	"errors"
	"io"
	"math"
	"net/http"
	"strconv"
	"strings"

	"connectrpc.com/connect"
)

// Wrap wraps h, a connect-go handler serving procedures, in the request
// checks:
//
//   - A POST to one of procedures whose content type no protocol of that
//     procedure handles is answered with a readable error. connect-go
//     answers such requests with a bare HTTP 415 and an empty body, which
//     leaves a person using curl without "-H 'Content-Type:
//     application/json'" (curl then sends application/x-www-form-urlencoded)
//     with nothing to go on. The guard keeps the status and connect-go's
//     Accept-Post header, and adds a Connect error body with code
//     invalid_argument and a message saying what to send. It only
//     intercepts requests connect-go would refuse anyway, so it never
//     changes the outcome of a request connect-go accepts.
//   - Request bodies are bounded at maxMessageBytes plus framing (0: not
//     bounded). connect-go's read cap refuses a larger message, but first
//     reads the rest of the body to throw it away (all of it for Connect,
//     up to the size the gRPC envelope declares, at most 4 GiB, for gRPC
//     and gRPC-Web), before any interceptor has run; an endless body would
//     hold the handler forever. Past the bound the body's reads fail with
//     [http.MaxBytesError], which connect-go answers with
//     resource_exhausted, as it answers any oversized message. Use it only
//     for procedures whose request is one message (unary and
//     server-streaming).
//
// It calls h once per procedure while it is built, with a request h
// refuses, to learn the content types from h's answer.
func Wrap(h http.Handler, maxMessageBytes int, procedures ...string) http.Handler {
	g := &requestGuard{next: h, procedures: make(map[string]*acceptedTypes, len(procedures))}
	if maxMessageBytes > 0 && int64(maxMessageBytes) < math.MaxInt64-bodyOverhead {
		g.maxBodyBytes = int64(maxMessageBytes) + bodyOverhead
	}
	for _, procedure := range procedures {
		if accepted := probeAcceptedTypes(h, procedure); accepted != nil {
			g.procedures[procedure] = accepted
		}
	}
	return g
}

type requestGuard struct {
	next http.Handler
	// maxBodyBytes bounds the bytes read from a request body; 0: no bound.
	maxBodyBytes int64
	// procedures holds what each procedure accepts; a procedure missing
	// here is left to connect-go.
	procedures map[string]*acceptedTypes
}

// acceptedTypes is what one procedure's handler accepts, as its own 415
// answer says.
type acceptedTypes struct {
	acceptPost string
	// mediaTypes holds the media types of acceptPost (lowercase, without
	// parameters).
	mediaTypes map[string]struct{}
}

// bodyOverhead is what a request body may hold besides a message of the
// capped size: a gRPC envelope's 5-byte prefix, and the 5 bytes connect-go
// reads after the message to make sure there is no second one. (A Connect
// unary body is the message itself; the cap plus one byte is read.)
const bodyOverhead = 64

// probeAcceptedTypes learns the content types h serves for procedure from
// the Accept-Post header of h's own 415 answer to a probe, so that the list
// follows whatever codecs the handler options configured (and a streaming
// procedure's differ from a unary one's). nil if h does not answer so.
func probeAcceptedTypes(h http.Handler, procedure string) *acceptedTypes {
	probe, err := http.NewRequest(http.MethodPost, procedure, http.NoBody)
	if err != nil {
		return nil
	}
	probe.Header.Set("Content-Type", "vmre/probe")
	rec := &headerRecorder{header: make(http.Header)}
	h.ServeHTTP(rec, probe)
	acceptPost := rec.header.Get("Accept-Post")
	if rec.code != http.StatusUnsupportedMediaType || acceptPost == "" {
		// connect-go changed how it refuses content types: leave them to it.
		return nil
	}
	a := &acceptedTypes{acceptPost: acceptPost, mediaTypes: make(map[string]struct{})}
	for _, ct := range strings.Split(acceptPost, ",") {
		a.mediaTypes[mediaType(ct)] = struct{}{}
	}
	return a
}

func (g *requestGuard) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if accepted := g.procedures[r.URL.Path]; accepted != nil && r.Method == http.MethodPost {
		ct := r.Header.Get("Content-Type")
		if _, ok := accepted.mediaTypes[mediaType(ct)]; !ok {
			accepted.refuse(w, ct)
			return
		}
	}
	if g.maxBodyBytes > 0 && r.Body != nil {
		// Over HTTP/1.1 net/http then also closes the connection after the
		// answer rather than read on to reuse it (when the ResponseWriter
		// it sees is its own).
		r.Body = http.MaxBytesReader(w, r.Body, g.maxBodyBytes)
	}
	g.next.ServeHTTP(w, r)
}

func (a *acceptedTypes) refuse(w http.ResponseWriter, contentType string) {
	var msg string
	if contentType == "" {
		msg = "request has no Content-Type"
	} else {
		msg = "unsupported Content-Type " + quoteBounded(contentType)
	}
	if _, unary := a.mediaTypes["application/json"]; unary {
		msg += ": send application/json (Connect with JSON, as curl -H 'Content-Type: application/json') " +
			"or application/proto, or call with a gRPC or gRPC-Web client"
	} else {
		msg += ": send application/connect+json or application/connect+proto (a Connect stream), " +
			"or call with a gRPC or gRPC-Web client"
	}
	body, err := json.Marshal(struct {
		Code    string `json:"code"`
		Message string `json:"message"`
	}{connect.CodeInvalidArgument.String(), msg})
	if err != nil {
		w.WriteHeader(http.StatusUnsupportedMediaType)
		return
	}
	h := w.Header()
	h.Set("Accept-Post", a.acceptPost)
	h.Set("Content-Type", "application/json")
	w.WriteHeader(http.StatusUnsupportedMediaType)
	_, _ = w.Write(body) // The client has gone if this fails; nothing to do.
}

// mediaType returns the lowercase media type of a Content-Type value,
// without parameters: "application/json" for "Application/JSON; charset=utf-8".
func mediaType(contentType string) string {
	mt, _, _ := strings.Cut(contentType, ";")
	return strings.ToLower(strings.TrimSpace(mt))
}

// quoteBounded quotes s for a message, bounding its length: the value comes
// from the caller and goes back into an error message.
func quoteBounded(s string) string {
	const maxLen = 64
	if len(s) > maxLen {
		return strconv.Quote(s[:maxLen]) + "..."
	}
	return strconv.Quote(s)
}

// headerRecorder is the minimal http.ResponseWriter the probe needs.
type headerRecorder struct {
	header http.Header
	code   int
}

func (r *headerRecorder) Header() http.Header { return r.header }

func (r *headerRecorder) WriteHeader(code int) {
	if r.code == 0 {
		r.code = code
	}
}

func (r *headerRecorder) Write(b []byte) (int, error) {
	r.WriteHeader(http.StatusOK)
	return len(b), nil
}

// errInflatedTooLarge is the error a decompressor from [BoundedGzip]
// returns once its output passes the bound.
var errInflatedTooLarge = errors.New("decompressed message exceeds the size cap")

// BoundedGzip returns a handler option that serves gzip with a decompressor
// which stops after maxBytes+1 bytes of output. connect-go's
// WithReadMaxBytes already refuses a larger message, but first inflates the
// rest of it to report its size, so a small bomb still costs its full
// inflated size in CPU; this one fails instead (connect-go answers
// resource_exhausted). Pair it with connect.WithReadMaxBytes(maxBytes).
func BoundedGzip(maxBytes int64) connect.HandlerOption {
	return connect.WithCompression("gzip",
		func() connect.Decompressor { return &boundedGzip{max: maxBytes} },
		func() connect.Compressor { return gzip.NewWriter(io.Discard) },
	)
}

// boundedGzip is a gzip reader that fails once it has produced more than
// max+1 bytes. connect-go pools it and calls Reset before each use.
type boundedGzip struct {
	r    gzip.Reader
	max  int64
	read int64
}

func (b *boundedGzip) Reset(r io.Reader) error {
	b.read = 0
	return b.r.Reset(r)
}

func (b *boundedGzip) Read(p []byte) (int, error) {
	if b.read > b.max {
		return 0, errInflatedTooLarge
	}
	if rest := b.max + 1 - b.read; int64(len(p)) > rest {
		p = p[:rest]
	}
	n, err := b.r.Read(p)
	b.read += int64(n)
	return n, err
}

func (b *boundedGzip) Close() error { return b.r.Close() }
