package h2unary

// The framing of a handler's answer, as net/http's HTTP/2 server frames it.

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"io"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"time"

	"golang.org/x/net/http/httpguts"
	"golang.org/x/net/http2"
	"golang.org/x/net/http2/hpack"
)

// handlerChunk is the size of net/http's buffer of a handler's output: a
// flush or a full buffer becomes a chunk.
const handlerChunk = 4 << 10

// answer calls the handler for cl and frames its answer into c.out.
func (c *Conn) answer(cl call) {
	c.lastStream = cl.stream
	c.recv.avail -= cl.flow
	if inc := c.recv.giveBack(cl.flow); inc > 0 {
		_ = c.fr.WriteWindowUpdate(0, inc)
	}
	ctx, cancel := context.WithCancel(context.WithValue(c.ctx, http.LocalAddrContextKey, c.c.LocalAddr()))
	defer cancel()
	req := cl.req.WithContext(ctx)
	req.Body = io.NopCloser(bytes.NewReader(cl.body))
	w := &response{c: c, stream: cl.stream, window: c.peerWindow, header: make(http.Header)}
	w.bw = bufio.NewWriterSize(chunkWriter{w}, handlerChunk)
	defer func() {
		if recover() != nil {
			_ = c.fr.WriteRSTStream(cl.stream, http2.ErrCodeInternal)
		}
	}()
	c.s.Handler.ServeHTTP(w, req)
	w.handlerDone = true
	w.Flush()
}

// response is the handler's http.ResponseWriter.
type response struct {
	c           *Conn
	stream      uint32
	window      uint32      // the stream's send window
	header      http.Header // the handler's
	snap        http.Header // the header as WriteHeader saw it
	status      int
	bw          *bufio.Writer
	sentHeader  bool
	handlerDone bool
	ended       bool
	trailers    []string // declared trailer keys, canonical
}

func (w *response) Header() http.Header { return w.header }

func (w *response) WriteHeader(code int) {
	if w.status != 0 || code < 200 || code > 999 {
		return
	}
	w.status = code
	w.snap = w.header.Clone()
	if w.snap == nil {
		w.snap = make(http.Header)
	}
}

func (w *response) Write(p []byte) (int, error) {
	if w.status == 0 {
		w.WriteHeader(http.StatusOK)
	}
	if !bodyAllowed(w.status) {
		return 0, http.ErrBodyNotAllowed
	}
	return w.bw.Write(p)
}

func (w *response) Flush() {
	if w.status == 0 {
		w.WriteHeader(http.StatusOK)
	}
	if w.bw.Buffered() > 0 {
		_ = w.bw.Flush()
	} else {
		w.writeChunk(nil)
	}
}

type chunkWriter struct{ w *response }

func (cw chunkWriter) Write(p []byte) (int, error) { return cw.w.writeChunk(p) }

// writeChunk frames a chunk of the handler's output as net/http's
// responseWriterState.writeChunk does, for a POST.
func (w *response) writeChunk(p []byte) (int, error) {
	if w.ended {
		return 0, errors.New("h2unary: stream ended")
	}
	if w.handlerDone {
		w.promoteTrailers()
	}
	if !w.sentHeader {
		w.sentHeader = true
		var ctype, clen string
		if clen = w.snap.Get("Content-Length"); clen != "" {
			w.snap.Del("Content-Length")
			if _, err := strconv.ParseUint(clen, 10, 63); err != nil {
				clen = ""
			}
		}
		if _, ok := w.snap["Content-Length"]; !ok && clen == "" && w.handlerDone && bodyAllowed(w.status) {
			clen = strconv.Itoa(len(p))
		}
		if _, ok := w.snap["Content-Type"]; !ok && w.snap.Get("Content-Encoding") == "" && bodyAllowed(w.status) && len(p) > 0 {
			ctype = http.DetectContentType(p)
		}
		var date string
		if _, ok := w.snap["Date"]; !ok {
			date = time.Now().UTC().Format(http.TimeFormat)
		}
		for _, v := range w.snap["Trailer"] {
			for _, k := range strings.Split(v, ",") {
				w.declareTrailer(textprotoTrim(k))
			}
		}
		delete(w.snap, "Connection")
		end := w.handlerDone && len(w.trailers) == 0 && len(p) == 0
		w.c.hb.Reset()
		w.encode(":status", strconv.Itoa(w.status))
		w.encodeHeader(w.snap, nil)
		if ctype != "" {
			w.encode("content-type", ctype)
		}
		if clen != "" {
			w.encode("content-length", clen)
		}
		if date != "" {
			w.encode("date", date)
		}
		w.writeHeaders(end)
		if end {
			return 0, nil
		}
	}
	if len(p) == 0 && !w.handlerDone {
		return 0, nil
	}
	nonEmpty := slices.ContainsFunc(w.trailers, func(k string) bool { _, ok := w.header[k]; return ok })
	end := w.handlerDone && !nonEmpty
	if len(p) > 0 || end {
		if len(p) > int(min(w.window, w.c.peerMaxFrame)) || int64(len(p)) > w.c.sendWindow {
			// More than the client's window: not an answer this package
			// gives (the handler's are a few bytes), nor one to wait for.
			_ = w.c.fr.WriteRSTStream(w.stream, http2.ErrCodeInternal)
			w.ended = true
			return 0, errors.New("h2unary: answer larger than the client's window")
		}
		w.window -= uint32(len(p))
		w.c.sendWindow -= int64(len(p))
		_ = w.c.fr.WriteData(w.stream, end, p)
	}
	if w.handlerDone && nonEmpty {
		w.c.hb.Reset()
		w.encodeHeader(w.header, w.trailers)
		w.writeHeaders(true)
	}
	return len(p), nil
}

// promoteTrailers moves the handler's "Trailer:"-prefixed keys to the
// declared trailers, sorted, as net/http does once the handler is done.
func (w *response) promoteTrailers() {
	for k, vv := range w.header {
		if t, ok := strings.CutPrefix(k, http.TrailerPrefix); ok {
			w.declareTrailer(t)
			w.header[http.CanonicalHeaderKey(t)] = vv
		}
	}
	slices.Sort(w.trailers)
}

func (w *response) declareTrailer(k string) {
	k = http.CanonicalHeaderKey(k)
	if !httpguts.ValidTrailerHeader(k) || slices.Contains(w.trailers, k) {
		return
	}
	w.trailers = append(w.trailers, k)
}

// encodeHeader encodes h's fields under keys (nil: all, sorted) as
// net/http's encodeHeaders does.
func (w *response) encodeHeader(h http.Header, keys []string) {
	if keys == nil {
		keys = make([]string, 0, len(h))
		for k := range h {
			keys = append(keys, k)
		}
		slices.Sort(keys)
	}
	for _, k := range keys {
		vv := h[k]
		lk := strings.ToLower(k)
		if !isASCII(k) || !validWireName(lk) {
			continue
		}
		for _, v := range vv {
			if !httpguts.ValidHeaderFieldValue(v) || (lk == "transfer-encoding" && v != "trailers") {
				continue
			}
			w.encode(lk, v)
		}
	}
}

func (w *response) encode(k, v string) {
	_ = w.c.enc.WriteField(hpack.HeaderField{Name: k, Value: v})
}

// writeHeaders frames the header block in c.hb, split into CONTINUATION
// frames at 16 KiB, the frame size every peer takes, as net/http does.
func (w *response) writeHeaders(end bool) {
	const maxFrag = 16 << 10
	block := w.c.hb.Bytes()
	first := true
	for first || len(block) > 0 {
		frag := block[:min(len(block), maxFrag)]
		block = block[len(frag):]
		if first {
			_ = w.c.fr.WriteHeaders(http2.HeadersFrameParam{StreamID: w.stream, BlockFragment: frag, EndStream: end, EndHeaders: len(block) == 0})
		} else {
			_ = w.c.fr.WriteContinuation(w.stream, len(block) == 0, frag)
		}
		first = false
	}
	if end {
		w.ended = true
	}
}

func bodyAllowed(status int) bool {
	return !(status >= 100 && status <= 199) && status != http.StatusNoContent && status != http.StatusNotModified
}

func isASCII(s string) bool {
	for i := range len(s) {
		if s[i] >= 0x80 {
			return false
		}
	}
	return true
}

// validWireName reports whether k is a lowercase token, as HTTP/2 field
// names must be.
func validWireName(k string) bool {
	if k == "" {
		return false
	}
	for i := range len(k) {
		if !httpguts.IsTokenRune(rune(k[i])) || ('A' <= k[i] && k[i] <= 'Z') {
			return false
		}
	}
	return true
}

func textprotoTrim(s string) string { return strings.Trim(s, " \t") }
