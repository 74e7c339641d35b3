package subprocess

import (
	"bytes"
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"os"
	"sync"
	"time"
	"unicode/utf8"

	"github.com/rs/zerolog"
	"github.com/vmre/vmre/logtime"
)

// Names of the two output streams, as in [Line.Stream] and the "stream" log
// field.
const (
	StreamStdout = "stdout"
	StreamStderr = "stderr"
)

// Line is one line of a plugin's output, or one chunk of a line longer than
// Config.MaxLineBytes.
type Line struct {
	// Stream is StreamStdout or StreamStderr.
	Stream string
	// Text is the line without its "\n" or "\r\n", exactly as the plugin
	// wrote it except that invalid UTF-8 is replaced with U+FFFD. A JSON log
	// line is passed whole, not reduced to its message.
	Text string
	// Level is the level the line was logged at: the level of a JSON log
	// line, error for a panic, otherwise info.
	Level zerolog.Level
	// Time is when the engine read the line from the pipe.
	Time time.Time
	// Partial is set on every chunk of an over-long line but the last.
	Partial bool
	// Panic is set on the line that starts a Go panic or fatal runtime
	// error ("panic: ...", "fatal error: ..."), and on all its chunks.
	Panic bool
}

// LineBytes is a [Line] whose text is borrowed: it is what
// Config.OnOutputBytes receives. Text points into the engine's read buffer
// (or a scratch buffer) and is valid only until the callback returns; the
// engine reuses that memory for the next line.
type LineBytes struct {
	// Stream is StreamStdout or StreamStderr.
	Stream string
	// Text is [Line.Text] as bytes: the line without its "\n" or "\r\n",
	// with invalid UTF-8 replaced with U+FFFD. Copy what you keep.
	Text []byte
	// Level, Time, Partial and Panic are as in [Line].
	Level   zerolog.Level
	Time    time.Time
	Partial bool
	Panic   bool
}

// Line returns l with its text copied into a string, safe to keep.
func (l *LineBytes) Line() Line {
	return Line{Stream: l.Stream, Text: string(l.Text), Level: l.Level, Time: l.Time, Partial: l.Partial, Panic: l.Panic}
}

// Log fields the bridge adds to each line, beside the message.
const (
	fieldVM      = "vm"
	fieldPid     = "pid"
	fieldStream  = "stream"
	fieldPartial = "partial"
	fieldPanic   = "panic"
	// fieldJSON holds the whole original object of a JSON log line, so
	// nothing but its level and message is lifted out of it.
	fieldJSON = "fields"
)

// Reader buffer sizing: a buffer holds one line of MaxLineBytes plus at
// least readRoom bytes of fresh input, so a read is never tiny. The default
// pipe holds 64 KiB, which one read empties.
const (
	readRoom       = 64 << 10
	compactBelow   = readRoom / 2
	tailLineCap    = 1 << 10 // bytes kept per stderr tail line
	drainTimeout   = 250 * time.Millisecond
	finalDrainCap  = 4 << 20 // bytes read after the drain timeout, at most
	defaultBufSize = DefaultMaxLineBytes + readRoom
)

// bufPool recycles reader buffers of one size. A stream takes a buffer only
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

// defaultBufs serves every stream with the default MaxLineBytes.
var defaultBufs = newBufPool(defaultBufSize)

func bufPoolFor(maxLine int) *bufPool {
	if maxLine == DefaultMaxLineBytes {
		return defaultBufs
	}
	return newBufPool(maxLine + readRoom)
}

// stream bridges one output pipe into the log. It is driven by a single
// goroutine (run); nothing in it is shared.
type stream struct {
	name     string
	f        *os.File
	rs       readState // per-OS read plumbing
	log      zerolog.Logger
	max      int
	onOutput func(Line)
	onBytes  func(LineBytes)
	tail     *tail // stderr only
	pool     *bufPool

	buf        []byte          // nil while idle
	start, end int             // unconsumed window buf[start:end]
	scanned    int             // bytes of the window known to hold no '\n'
	inLine     bool            // the last chunk was Partial
	linePanic  bool            // the line being continued is a panic
	now        time.Time       // when the lines in the window were read
	ctx        context.Context // events' context with now, for logtime.Hook; nil: build it
	valid      []byte          // scratch for lines with invalid UTF-8
}

func newStream(name string, f *os.File, log zerolog.Logger, cfg *Config, pool *bufPool, tail *tail) *stream {
	return &stream{
		name:     name,
		f:        f,
		log:      log.With().Str(fieldStream, name).Logger(),
		max:      cfg.MaxLineBytes,
		onOutput: cfg.OnOutput,
		onBytes:  cfg.OnOutputBytes,
		tail:     tail,
		pool:     pool,
	}
}

// run copies the pipe into the log until EOF, or until the supervisor
// sets a read deadline because a process outside the plugin's group kept
// the pipe open (see Process.supervise), then closes the pipe and done.
func (s *stream) run(done chan<- struct{}) {
	defer close(done)
	defer s.f.Close()
	if err := s.rs.init(s.f); err != nil {
		return
	}
	for {
		if s.buf != nil && s.start > 0 && len(s.buf)-s.end < compactBelow {
			s.end = copy(s.buf, s.buf[s.start:s.end])
			s.start = 0
		}
		n, err := s.fill()
		if n > 0 {
			s.end += n
			s.now, s.ctx = time.Now(), nil
			s.process()
		}
		if err != nil {
			if errors.Is(err, os.ErrDeadlineExceeded) {
				s.drainRest()
			}
			break
		}
	}
	s.flush()
	if s.buf != nil {
		s.pool.put(s.buf)
		s.buf = nil
	}
}

// drainRest reads, without waiting, whatever the pipe still holds.
func (s *stream) drainRest() {
	total := 0
	for total < finalDrainCap {
		if s.buf == nil {
			s.buf = s.pool.get()
		}
		if s.start > 0 && len(s.buf)-s.end < compactBelow {
			s.end = copy(s.buf, s.buf[s.start:s.end])
			s.start = 0
		}
		n := s.rs.readNow(s.buf[s.end:])
		if n <= 0 {
			return
		}
		total += n
		s.end += n
		s.now, s.ctx = time.Now(), nil
		s.process()
	}
}

// process emits every complete line in the window, and chunks of lines
// longer than s.max, leaving at most s.max bytes of an incomplete line
// (s.max+1 if the last is a '\r' that may start a "\r\n").
func (s *stream) process() {
	for {
		w := s.buf[s.start:s.end]
		i := -1
		if s.scanned < len(w) {
			if j := bytes.IndexByte(w[s.scanned:], '\n'); j >= 0 {
				i = s.scanned + j
			}
		}
		// The '\r' of a "\r\n" is line end, not text: a line of s.max
		// bytes ending in "\r\n" fits, and one that has only reached
		// its '\r' waits for the next byte rather than being cut.
		crAtMax := len(w) > s.max && w[s.max] == '\r'
		switch {
		case i >= 0 && (i <= s.max || i == s.max+1 && crAtMax):
			s.emit(w[:i], false)
			s.start += i + 1
			s.scanned = 0
		case len(w) > s.max && !(len(w) == s.max+1 && crAtMax):
			cut := chunkCut(w, s.max)
			s.emit(w[:cut], true)
			s.start += cut
			if i < 0 {
				s.scanned = len(w) - cut
			} else {
				s.scanned = i - cut
			}
		default:
			s.scanned = len(w)
			if s.start == s.end {
				s.start, s.end, s.scanned = 0, 0, 0
			}
			return
		}
	}
}

// flush emits an unterminated last line at EOF.
func (s *stream) flush() {
	if s.buf != nil && s.end > s.start {
		s.emit(s.buf[s.start:s.end], false)
		s.start, s.end, s.scanned = 0, 0, 0
	}
}

// chunkCut returns where to end a chunk of w that must hold at most max
// bytes: at max, or up to three bytes earlier so as not to split a UTF-8
// sequence.
func chunkCut(w []byte, max int) int {
	for cut := max; cut > 0 && cut > max-utf8.UTFMax; cut-- {
		if !isContinuation(w[cut]) {
			return cut
		}
	}
	return max
}

func isContinuation(c byte) bool { return c&0xC0 == 0x80 }

// jsonSafe reports whether b can go between JSON quotes as it is: no byte
// zerolog's JSON encoder would escape or replace (below 0x20, '"', '\\',
// 0x7f and above, which covers all of UTF-8's multi-byte sequences). It
// checks eight bytes at a time, 32 per branch, and the last (up to) eight
// bytes as one word that may overlap the words before.
func jsonSafe(b []byte) bool {
	if len(b) < 8 {
		for _, c := range b {
			if c < 0x20 || c >= 0x7f || c == '"' || c == '\\' {
				return false
			}
		}
		return true
	}
	last := binary.LittleEndian.Uint64(b[len(b)-8:])
	var bad uint64
	for len(b) >= 32 {
		bad |= unsafeBytes(binary.LittleEndian.Uint64(b)) | unsafeBytes(binary.LittleEndian.Uint64(b[8:])) |
			unsafeBytes(binary.LittleEndian.Uint64(b[16:])) | unsafeBytes(binary.LittleEndian.Uint64(b[24:]))
		if bad != 0 {
			return false
		}
		b = b[32:]
	}
	for len(b) > 8 {
		bad |= unsafeBytes(binary.LittleEndian.Uint64(b))
		b = b[8:]
	}
	// The last word: re-checking bytes already checked changes nothing.
	return bad|unsafeBytes(last) == 0
}

// unsafeBytes returns a word whose bit 7 of some byte is set if and only
// if some byte of x is one jsonSafe refuses. Each term can also flag a
// byte above one that is refused (a carry or borrow runs on from it), so
// only the word as a whole is exact, which is all jsonSafe needs.
func unsafeBytes(x uint64) uint64 {
	const (
		ones  = 0x0101010101010101
		highs = 0x8080808080808080
	)
	q := x ^ ('"' * ones)
	bs := x ^ ('\\' * ones)
	return (x | // 0x80 and above
		(x + ones) | // 0x7f (with no byte above 0x7f, nothing carries)
		((x - 0x20*ones) &^ x) | // below 0x20
		((q - ones) &^ q) | // '"': a zero byte of q
		((bs - ones) &^ bs)) & highs // '\\'
}

// emit logs one line or chunk and hands it to the tail, OnOutput and
// OnOutputBytes.
func (s *stream) emit(b []byte, partial bool) {
	continuation := s.inLine
	s.inLine = partial
	if !partial && len(b) > 0 && b[len(b)-1] == '\r' {
		b = b[:len(b)-1]
	}
	level := zerolog.InfoLevel
	msg := b
	var (
		fields     []byte
		msgEscaped bool
		isPanic    bool
		ascii      bool // b is known to be ASCII, so valid UTF-8
	)
	switch {
	case continuation:
		isPanic = s.linePanic
	case !partial && len(b) > 0 && b[0] == '{':
		if jl, ok := parseJSONLine(b); ok {
			level, fields = jl.level, b
			if jl.msg != nil {
				msg, msgEscaped = jl.msg, jl.msgEscaped
			} else {
				msg = nil
			}
		}
	default:
		isPanic = bytes.HasPrefix(b, panicPrefix) || bytes.HasPrefix(b, fatalPrefix)
	}
	if !continuation {
		s.linePanic = isPanic
	}
	if isPanic {
		level = zerolog.ErrorLevel
	}

	if e := s.log.WithLevel(level); e != nil {
		// The line's time is when it was read, for a logtime.Hook on
		// Log: one context per read, wrapping the logger's own.
		if s.ctx == nil {
			s.ctx = logtime.WithTime(e.GetCtx(), s.now)
		}
		e = e.Ctx(s.ctx)
		if partial {
			e = e.Bool(fieldPartial, true)
		}
		if isPanic {
			e = e.Bool(fieldPanic, true)
		}
		if fields != nil {
			e = e.RawJSON(fieldJSON, fields)
		}
		switch {
		case msgEscaped:
			e = e.Str(zerolog.MessageFieldName, unquoteJSON(msg))
		case msg != nil && len(msg)+2 <= len(s.buf)-s.end && jsonSafe(msg):
			// What Bytes would write, without zerolog's byte-by-byte
			// escape check (jsonSafe checks eight bytes at a time): the
			// message quoted in the read buffer's free space after the
			// window, which the next read overwrites anyway. When that
			// space is too small, Bytes below does it. A nil msg (a JSON
			// line without one) gets no message field at all.
			q := s.buf[s.end:]
			q[0] = '"'
			n := copy(q[1:], msg)
			q[n+1] = '"'
			e = e.RawJSON(zerolog.MessageFieldName, q[:n+2])
			ascii = len(msg) == len(b) // the message is the whole line
		case msg != nil:
			e = e.Bytes(zerolog.MessageFieldName, msg)
		}
		e.Send()
	}
	if s.tail != nil {
		s.tail.add(b, isPanic && !continuation)
	}
	if s.onOutput != nil || s.onBytes != nil {
		text := b
		if !ascii && !utf8.Valid(b) {
			s.valid = appendValidUTF8(s.valid[:0], b)
			text = s.valid
		}
		l := LineBytes{Stream: s.name, Text: text, Level: level, Time: s.now, Partial: partial, Panic: isPanic}
		if s.onOutput != nil {
			s.onOutput(l.Line())
		}
		if s.onBytes != nil {
			s.onBytes(l)
		}
	}
}

var (
	panicPrefix = []byte("panic: ")
	fatalPrefix = []byte("fatal error: ")
)

// validText returns b as a string of valid UTF-8.
func validText(b []byte) string {
	if utf8.Valid(b) {
		return string(b)
	}
	return string(appendValidUTF8(nil, b))
}

// appendValidUTF8 appends b to dst with every run of invalid UTF-8
// replaced with one U+FFFD, as strings.ToValidUTF8 does, without a string.
func appendValidUTF8(dst, b []byte) []byte {
	invalid := false
	for i := 0; i < len(b); {
		if c := b[i]; c < utf8.RuneSelf {
			dst = append(dst, c)
			invalid = false
			i++
			continue
		}
		_, n := utf8.DecodeRune(b[i:])
		if n == 1 {
			if !invalid {
				dst = utf8.AppendRune(dst, utf8.RuneError)
				invalid = true
			}
			i++
			continue
		}
		dst = append(dst, b[i:i+n]...)
		invalid = false
		i += n
	}
	return dst
}

// unquoteJSON decodes the body of a JSON string literal (without its
// quotes) that contains escapes. parseJSONLine has validated it.
func unquoteJSON(body []byte) string {
	quoted := make([]byte, 0, len(body)+2)
	quoted = append(quoted, '"')
	quoted = append(quoted, body...)
	quoted = append(quoted, '"')
	var s string
	if err := json.Unmarshal(quoted, &s); err != nil {
		return validText(body)
	}
	return s
}

// tail keeps the last lines of stderr for an [vmre.ExitError], each cut to
// tailLineCap bytes, and the first line of the last panic, which a long
// goroutine dump would otherwise push out.
type tail struct {
	lines     [][]byte
	next, n   int
	panicLine []byte
	panicSeq  uint64 // seq of panicLine
	seq       uint64 // lines added so far
}

func newTail(n int) *tail {
	return &tail{lines: make([][]byte, n)}
}

func (t *tail) add(b []byte, startsPanic bool) {
	if len(b) > tailLineCap {
		b = b[:chunkCut(b, tailLineCap)]
	}
	t.seq++
	if startsPanic {
		t.panicLine = append(t.panicLine[:0], b...)
		t.panicSeq = t.seq
	}
	if len(t.lines) == 0 {
		return
	}
	t.lines[t.next] = append(t.lines[t.next][:0], b...)
	t.next = (t.next + 1) % len(t.lines)
	if t.n < len(t.lines) {
		t.n++
	}
}

// snapshot returns the kept lines, oldest first, as valid UTF-8. When the
// last panic line has scrolled out of the window it comes first.
func (t *tail) snapshot() []string {
	out := make([]string, 0, t.n+1)
	if t.panicLine != nil && t.seq-t.panicSeq >= uint64(t.n) {
		out = append(out, validText(t.panicLine))
	}
	first := (t.next - t.n + len(t.lines)) % max(len(t.lines), 1)
	for i := range t.n {
		out = append(out, validText(t.lines[(first+i)%len(t.lines)]))
	}
	return out
}
