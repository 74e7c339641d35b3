package server

import (
	"bytes"
	"log"
	"sync"
	"time"

	"github.com/rs/zerolog"
)

// ErrorLogPerSecond is how many lines a logger from [NewErrorLog] writes
// per second at most; the rest are counted and the count is reported on the
// next line written.
const ErrorLogPerSecond = 10

// NewErrorLog returns a logger for [http.Server.ErrorLog] that writes each
// line net/http (and its HTTP/2 server) logs to l at warn level, so that
// they keep l's format. Any client can make net/http log (a bad HTTP/2
// preface, a protocol error), so at most [ErrorLogPerSecond] lines a second
// are written; the number dropped since the last written line is in its
// "suppressed" field. The logger is safe for concurrent use.
func NewErrorLog(l zerolog.Logger) *log.Logger {
	return log.New(&errorLogWriter{log: l, now: time.Now}, "", 0)
}

// errorLogWriter receives one line per Write from [log.Logger].
type errorLogWriter struct {
	log zerolog.Logger
	now func() time.Time

	mu         sync.Mutex
	second     int64 // the Unix second the count is for
	written    int
	suppressed int
}

func (w *errorLogWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	sec := w.now().Unix()
	if sec != w.second {
		w.second, w.written = sec, 0
	}
	if w.written >= ErrorLogPerSecond {
		w.suppressed++
		w.mu.Unlock()
		return len(p), nil
	}
	w.written++
	suppressed := w.suppressed
	w.suppressed = 0
	w.mu.Unlock()
	ev := w.log.Warn().Str("source", "net/http")
	if suppressed > 0 {
		ev = ev.Int("suppressed", suppressed)
	}
	ev.Msg(string(bytes.TrimRight(p, "\n")))
	return len(p), nil
}
