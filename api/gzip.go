package api

import (
	"net/http"
	"strings"
	"sync"

	"github.com/klauspost/compress/gzip"
)

// gzipped serves h's responses gzip-compressed at klauspost's fastest
// level to clients whose Accept-Encoding takes gzip, and as they are to
// the others. It is written here rather than taken from klauspost's
// gzhttp because that package, and the zstd package it links, build
// CRC-32C tables in package variables: 1.2 M instructions at the start
// of every vmre process, `vmre version` included, a sixth of its
// start-up (cachegrind).
func gzipped(h http.Handler) http.Handler {
	writers := sync.Pool{New: func() any {
		w, _ := gzip.NewWriterLevel(nil, gzip.BestSpeed) // a valid level: no error
		return w
	}}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Add("Vary", "Accept-Encoding")
		if !acceptsGzip(r.Header.Values("Accept-Encoding")) {
			h.ServeHTTP(w, r)
			return
		}
		gz := writers.Get().(*gzip.Writer)
		defer writers.Put(gz)
		gz.Reset(w)
		gw := &gzipResponse{ResponseWriter: w, gz: gz}
		h.ServeHTTP(gw, r)
		if gw.started {
			_ = gz.Close() // the gzip trailer; a failed write is the client's
		}
	})
}

// acceptsGzip reports whether Accept-Encoding values take gzip: listed,
// without q=0.
func acceptsGzip(values []string) bool {
	for _, v := range values {
		for part := range strings.SplitSeq(v, ",") {
			coding, params, _ := strings.Cut(part, ";")
			if !strings.EqualFold(strings.TrimSpace(coding), "gzip") {
				continue
			}
			q, ok := strings.CutPrefix(strings.ReplaceAll(params, " ", ""), "q=")
			return !ok || strings.Trim(q, "0.") != ""
		}
	}
	return false
}

// gzipResponse compresses what the handler writes; the headers say so
// once the handler starts its response.
type gzipResponse struct {
	http.ResponseWriter
	gz      *gzip.Writer
	started bool
}

func (g *gzipResponse) WriteHeader(code int) {
	if !g.started {
		g.started = true
		g.Header().Del("Content-Length")
		g.Header().Set("Content-Encoding", "gzip")
	}
	g.ResponseWriter.WriteHeader(code)
}

func (g *gzipResponse) Write(b []byte) (int, error) {
	if !g.started {
		g.WriteHeader(http.StatusOK)
	}
	return g.gz.Write(b)
}

// Unwrap lets http.ResponseController reach the connection's writer.
func (g *gzipResponse) Unwrap() http.ResponseWriter { return g.ResponseWriter }
