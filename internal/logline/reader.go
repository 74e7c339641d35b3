package logline

import (
	"bytes"
	"context"
	"errors"
	"os"
	"sync"
	"time"

	"github.com/rs/zerolog"
)

// Reader buffer sizing: a buffer holds one line of MaxLineBytes plus at
// least readRoom bytes of fresh input, so a read is never tiny. The default
// pipe holds 64 KiB, which one read empties.
const (
	readRoom      = 64 << 10
	compactBelow  = readRoom / 2
	finalDrainCap = 4 << 20 // bytes read after StopWaiting, at most
)

// bufPool recycles reader buffers of one size. A reader takes a buffer only
// while the pipe has data for it or a line is incomplete, so an idle
// runtime holds none.
type bufPool struct {
	size int
	pool sync.Pool
}

func newBufPool(size int) *bufPool {
	p := &bufPool{size: size}
	p.pool.New = func() any { b := make([]byte, size); return &b }
	return p
}

func (p *bufPool) get() []byte  { return *(p.pool.Get().(*[]byte)) }
func (p *bufPool) put(b []byte) { p.pool.Put(&b) }

// defaultBufs serves every reader with the default MaxLineBytes.
var defaultBufs = newBufPool(DefaultMaxLineBytes + readRoom)

func bufPoolFor(maxLine int) *bufPool {
	if maxLine == DefaultMaxLineBytes {
		return defaultBufs
	}
	return newBufPool(maxLine + readRoom)
}

// Reader reads one output stream of a process into parsed lines. Run drives
// it from a single goroutine; only StopWaiting may be called from another.
type Reader struct {
	b          *Bridge
	stream     string
	streamJSON string // stream as a JSON string; empty if it needs escaping
	f          *os.File
	rs         readState // per-OS read plumbing
	max        int

	buf        []byte          // nil while idle
	start, end int             // unconsumed window buf[start:end]
	scanned    int             // bytes of the window known to hold no '\n'
	inLine     bool            // the last chunk was Partial
	linePanic  bool            // the line being continued is a panic
	*lineState                 // made at the first line: a quiet plugin has none
	now        time.Time       // when the lines in the window were read
	ctx        context.Context // events' context with now, for logtime.Hook
	deadlineMu sync.Mutex      // guards stopping, woken, f's replacement (usePoller) and its deadline
	stopping   bool            // StopWaiting was called
	woken      bool            // the waiter starts the reads (Start), no blocking read runs
	deadline   time.Time       // the dump's read deadline, zero: none
	wake       wakeState       // Start's state (Linux)
}

// lineState is what a reader needs once its stream has a line, so that a
// quiet plugin's readers stay small.
type lineState struct {
	parser   *Parser
	line     Line      // the line being handed on
	quoted   []byte    // scratch: a message in quotes
	timeText timeCache // plugin_time's text
	dump     dump      // a panic gathering its goroutine dump
}

// dumping reports whether a panic is gathering its dump.
func (r *Reader) dumping() bool { return r.lineState != nil && r.dump.active }

// Reader returns the reader of one stream (Stdout or Stderr) of the
// bridge's process; f is the read end of its pipe, which Run closes.
// NewPipe's is read best; the read end of an os.Pipe is read too.
func (b *Bridge) Reader(stream string, f *os.File) *Reader {
	var streamJSON string
	if jsonSafe([]byte(stream)) {
		streamJSON = `"` + stream + `"`
	}
	return &Reader{
		b:          b,
		stream:     stream,
		streamJSON: streamJSON,
		f:          f,
		max:        b.opts.MaxLineBytes,
	}
}

// Start copies the pipe into lines in the background until EOF, or until
// StopWaiting ends the wait for more, then closes the pipe and calls done.
// On Linux a quiet pipe holds no goroutine: the process's descriptor
// waiter (internal/fdwait) starts one when the pipe has data, which
// returns once the pipe is empty, and a timer bounds a panic's wait for
// its dump; elsewhere, or if the waiter cannot take the pipe, Start runs
// Run on a goroutine. Lines of the stream are handed on one at a time and
// in order either way. On Linux the lines of a plugin that writes without
// pause are read in batches (pauseForBatch), each line up to about 200 µs
// after it was written. Start must be called at most once, and not with Run.
func (r *Reader) Start(done func()) {
	if r.startWoken(done) {
		return
	}
	go func() {
		r.Run()
		done()
	}()
}

// Run copies the pipe into lines until EOF, or until StopWaiting ends the
// wait for more, then closes the pipe. It blocks until then.
func (r *Reader) Run() {
	r.usePoller()
	defer r.f.Close()
	if err := r.rs.init(r.f); err != nil {
		return
	}
	r.loop()
}

// loop is Run's blocking read loop.
func (r *Reader) loop() {
	for {
		if r.buf != nil && r.start > 0 && len(r.buf)-r.end < compactBelow {
			r.end = copy(r.buf, r.buf[r.start:r.end])
			r.start = 0
		}
		n, err := r.fill()
		if n > 0 {
			r.end += n
			r.setNow(time.Now())
			r.process()
		}
		if err != nil {
			if errors.Is(err, os.ErrDeadlineExceeded) {
				r.deadlineMu.Lock()
				stopping := r.stopping
				r.deadlineMu.Unlock()
				if !stopping {
					// The dump's deadline: the panic has waited long
					// enough for more of its dump.
					r.endDump()
					continue
				}
				r.drainRest()
			}
			break
		}
	}
	r.finishLines()
}

// finishLines hands on what is left at the end of the stream: an
// unterminated last line, a panic still gathering its dump.
func (r *Reader) finishLines() {
	r.flush()
	r.endDump()
	if r.buf != nil {
		r.b.pool.put(r.buf)
		r.buf = nil
	}
}

func (r *Reader) setNow(t time.Time) { r.now, r.ctx = t, nil }

// StopWaiting ends a read that waits for data: what the pipe already holds
// is still read, then Run returns. Safe to call from any goroutine.
func (r *Reader) StopWaiting() {
	r.deadlineMu.Lock()
	r.stopping = true
	woken := r.woken
	// A woken reader waiting for a flood (waitFlood) sees stopping
	// within floodPoll; one that falls back to blocking reads gets the
	// deadline then (unwake).
	if !woken {
		r.stopWaitingLocked()
	}
	r.deadlineMu.Unlock()
	if woken {
		r.stopWoken()
	}
}

func (r *Reader) stopRequested() bool {
	r.deadlineMu.Lock()
	defer r.deadlineMu.Unlock()
	return r.stopping
}

// setDeadline sets the read deadline for a dump (zero clears it), unless
// StopWaiting owns the deadline.
func (r *Reader) setDeadline(t time.Time) {
	r.deadlineMu.Lock()
	defer r.deadlineMu.Unlock()
	if r.stopping || t.Equal(r.deadline) {
		return
	}
	r.deadline = t
	if !r.woken {
		_ = r.f.SetReadDeadline(t)
	}
}

// drainRest reads, without waiting, whatever the pipe still holds.
func (r *Reader) drainRest() {
	total := 0
	for total < finalDrainCap {
		if r.buf == nil {
			r.buf = r.b.pool.get()
		}
		if r.start > 0 && len(r.buf)-r.end < compactBelow {
			r.end = copy(r.buf, r.buf[r.start:r.end])
			r.start = 0
		}
		n := r.rs.readNow(r.buf[r.end:])
		if n <= 0 {
			return
		}
		total += n
		r.end += n
		r.setNow(time.Now())
		r.process()
	}
}

// process hands on every complete line in the window, and chunks of lines
// longer than r.max, leaving at most r.max bytes of an incomplete line
// (r.max+1 if the last is a '\r' that may start a "\r\n").
func (r *Reader) process() {
	for {
		w := r.buf[r.start:r.end]
		i := -1
		if r.scanned < len(w) {
			if j := bytes.IndexByte(w[r.scanned:], '\n'); j >= 0 {
				i = r.scanned + j
			}
		}
		// The '\r' of a "\r\n" is line end, not text: a line of r.max
		// bytes ending in "\r\n" fits, and one that has only reached
		// its '\r' waits for the next byte rather than being cut.
		crAtMax := len(w) > r.max && w[r.max] == '\r'
		switch {
		case i >= 0 && (i <= r.max || i == r.max+1 && crAtMax):
			r.start += i + 1 + r.emit(w[:i], false, w[i+1:])
			r.scanned = 0
		case len(w) > r.max && !(len(w) == r.max+1 && crAtMax):
			cut := chunkCut(w, r.max)
			r.emit(w[:cut], true, nil)
			r.start += cut
			if i < 0 {
				r.scanned = len(w) - cut
			} else {
				r.scanned = i - cut
			}
		default:
			r.scanned = len(w)
			if r.start == r.end {
				r.start, r.end, r.scanned = 0, 0, 0
			}
			return
		}
	}
}

// flush hands on an unterminated last line at EOF.
func (r *Reader) flush() {
	if r.buf != nil && r.end > r.start {
		r.emit(r.buf[r.start:r.end], false, nil)
		r.start, r.end, r.scanned = 0, 0, 0
	}
}

var (
	panicPrefix = []byte("panic: ")
	fatalPrefix = []byte("fatal error: ")
)

// emit parses one line or chunk and hands it on, or adds it to a panic's
// dump. rest is what the window holds after the line's end: the lines
// that continue an hclog record are read from it, and emit returns how
// many bytes of it it read.
func (r *Reader) emit(b []byte, partial bool, rest []byte) int {
	continuation := r.inLine
	r.inLine = partial
	if !partial && len(b) > 0 && b[len(b)-1] == '\r' {
		b = b[:len(b)-1]
	}
	if r.b.rawHook != nil {
		r.b.rawHook(b)
	}
	if r.lineState == nil {
		r.lineState = &lineState{parser: NewParser(r.b.opts.Format, r.b.opts.Location)}
	}
	l := &r.line
	// Parse and ParseText set every other field.
	l.Seq, l.Pid, l.Stream, l.Time, l.Dump, l.Partial, l.Panic = 0, r.b.opts.Pid, r.stream, r.now, nil, partial, false
	if partial || continuation {
		// A chunk of an over-long line is text: the parsers need whole
		// lines.
		r.endDump()
		r.parser.ParseText(b, l)
		if continuation {
			l.Panic = r.linePanic
		} else {
			l.Panic = isPanicStart(l.Text)
			r.linePanic = l.Panic
		}
		if l.Panic {
			l.Level = zerolog.ErrorLevel
		}
		r.send(l, l.Panic && !continuation)
		return 0
	}
	r.parser.Parse(b, l)
	grouping := r.b.opts.Format != Raw && l.Format == Plain
	if r.dump.active {
		if grouping && isDumpLine(l.Text) && r.dump.add(l.Text, r.now) {
			r.setDeadline(r.dump.deadline(r.now))
			return 0
		}
		r.endDump()
	}
	if grouping && isPanicStart(l.Text) {
		r.dump.start(l.Text, r.now, r.b.opts.DumpBytes, r.b.opts.DumpWait)
		r.setDeadline(r.dump.deadline(r.now))
		return 0
	}
	n := r.parser.hclogMore(rest, l)
	r.send(l, false)
	return n
}

func isPanicStart(b []byte) bool {
	return bytes.HasPrefix(b, panicPrefix) || bytes.HasPrefix(b, fatalPrefix)
}

// endDump hands on the panic being gathered, if any, as one line.
func (r *Reader) endDump() {
	if !r.dumping() {
		return
	}
	d := &r.dump
	d.active = false
	r.setDeadline(time.Time{})
	l := Line{
		Pid: r.b.opts.Pid, Stream: r.stream, Time: d.readAt, Level: zerolog.ErrorLevel, Format: Plain,
		Text: d.first, Message: d.first, Panic: true, Dump: d.lines,
	}
	if l.Dump == nil {
		l.Dump = []byte{}
	}
	saved := r.now
	r.setNow(d.readAt)
	r.send(&l, true)
	r.setNow(saved)
	d.release()
}
