package api

import (
	"context"
	"net/http"
)

// connect-go flushes the response after every message of a stream. A
// watcher that wakes to find several changes waiting would then cost one
// write(2) per change; with 1,000 watchers the flushes, not the encoding,
// were most of a change's fan-out in a profile.
// withFlushBatching lets a streaming handler hold those flushes back while
// it sends a batch, and flush once after the last message.

type batchingWriterKey struct{}

// batchingWriter is an http.ResponseWriter whose Flush does nothing while
// holding is set.
type batchingWriter struct {
	http.ResponseWriter
	flusher http.Flusher
	holding bool
}

func (w *batchingWriter) Flush() {
	if !w.holding {
		w.flusher.Flush()
	}
}

// Unwrap lets http.ResponseController reach the connection's writer.
func (w *batchingWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }

// withFlushBatching gives requests for path a batchingWriter, reachable
// from the handler's context through flushHolder.
func withFlushBatching(h http.Handler, path string) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		flusher, ok := w.(http.Flusher)
		if !ok || r.URL.Path != path {
			h.ServeHTTP(w, r)
			return
		}
		bw := &batchingWriter{ResponseWriter: w, flusher: flusher}
		h.ServeHTTP(bw, r.WithContext(context.WithValue(r.Context(), batchingWriterKey{}, bw)))
	})
}

// flushHolder returns the function that makes the stream behind ctx skip
// its flushes while hold is true; the next message sent with hold false
// flushes everything written before it. Without a batchingWriter (a
// handler called some other way) the function does nothing.
func flushHolder(ctx context.Context) func(hold bool) {
	if bw, ok := ctx.Value(batchingWriterKey{}).(*batchingWriter); ok {
		return func(hold bool) { bw.holding = hold }
	}
	return func(bool) {}
}
