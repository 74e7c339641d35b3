//go:build linux

package subprocess

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/rs/zerolog"
	"github.com/vmre/vmre/logtime"
)

// testStream returns a stream that logs into buf and records lines.
func testStream(name string, maxLine int, buf io.Writer, lines *[]Line) *stream {
	cfg := &Config{MaxLineBytes: maxLine, OnOutput: func(l Line) { *lines = append(*lines, l) }}
	log := zerolog.New(buf).With().Str(fieldVM, "vm").Int(fieldPid, 7).Logger()
	var t *tail
	if name == StreamStderr {
		t = newTail(3)
	}
	return newStream(name, nil, log, cfg, bufPoolFor(maxLine), t)
}

func TestBridgeClassifiesLines(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name      string
		stream    string
		line      string
		wantLevel zerolog.Level
		wantMsg   string
		wantPanic bool
		wantJSON  bool
	}{
		{"plain stdout", StreamStdout, "hello", zerolog.InfoLevel, "hello", false, false},
		{"plain stderr", StreamStderr, "listening on :9650", zerolog.InfoLevel, "listening on :9650", false, false},
		{"zerolog", StreamStderr, `{"level":"warn","time":"2026-01-02T03:04:05Z","message":"disk low"}`, zerolog.WarnLevel, "disk low", false, true},
		{"zap", StreamStderr, `{"level":"error","ts":1.5,"caller":"x.go:1","msg":"boom","err":{"code":3}}`, zerolog.ErrorLevel, "boom", false, true},
		{"logrus warning", StreamStdout, `{"level":"warning","msg":"careful","time":"now"}`, zerolog.WarnLevel, "careful", false, true},
		{"slog upper case", StreamStdout, `{"time":"t","level":"DEBUG","msg":"dbg"}`, zerolog.DebugLevel, "dbg", false, true},
		{"trace", StreamStdout, `{"level":"trace","message":"tr"}`, zerolog.TraceLevel, "tr", false, true},
		{"fatal", StreamStdout, `{"level":"fatal","message":"dying"}`, zerolog.FatalLevel, "dying", false, true},
		{"panic level", StreamStdout, `{"level":"panic","message":"p"}`, zerolog.PanicLevel, "p", false, true},
		{"zap dpanic", StreamStdout, `{"level":"dpanic","msg":"dp"}`, zerolog.ErrorLevel, "dp", false, true},
		{"pino number", StreamStdout, `{"level":50,"msg":"pino error"}`, zerolog.ErrorLevel, "pino error", false, true},
		{"message wins over msg", StreamStdout, `{"msg":"second","level":"info","message":"first"}`, zerolog.InfoLevel, "first", false, true},
		{"escaped message", StreamStdout, `{"level":"info","message":"a \"quoted\" \u00e9 line\n"}`, zerolog.InfoLevel, "a \"quoted\" é line\n", false, true},
		{"no message", StreamStdout, `{"level":"info","n":1}`, zerolog.InfoLevel, "", false, true},
		{"unknown level", StreamStdout, `{"level":"loud","msg":"x"}`, zerolog.InfoLevel, `{"level":"loud","msg":"x"}`, false, false},
		{"no level", StreamStdout, `{"msg":"x"}`, zerolog.InfoLevel, `{"msg":"x"}`, false, false},
		{"nested level only", StreamStdout, `{"a":{"level":"error"}}`, zerolog.InfoLevel, `{"a":{"level":"error"}}`, false, false},
		{"broken json", StreamStdout, `{"level":"error","msg":"x"`, zerolog.InfoLevel, `{"level":"error","msg":"x"`, false, false},
		{"trailing garbage", StreamStdout, `{"level":"error"} x`, zerolog.InfoLevel, `{"level":"error"} x`, false, false},
		{"invalid utf8 in json", StreamStdout, "{\"level\":\"error\",\"msg\":\"\xff\"}", zerolog.InfoLevel, "{\"level\":\"error\",\"msg\":\"\ufffd\"}", false, false},
		{"go panic", StreamStderr, "panic: runtime error: index out of range [3] with length 3", zerolog.ErrorLevel, "panic: runtime error: index out of range [3] with length 3", true, false},
		{"fatal error", StreamStderr, "fatal error: concurrent map writes", zerolog.ErrorLevel, "fatal error: concurrent map writes", true, false},
		{"not a panic", StreamStderr, "a panic: maybe", zerolog.InfoLevel, "a panic: maybe", false, false},
		{"crlf", StreamStdout, "windows line\r", zerolog.InfoLevel, "windows line", false, false},
		{"invalid utf8", StreamStdout, "bad \xff\xfe bytes", zerolog.InfoLevel, "bad \ufffd\ufffd bytes", false, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			var buf bytes.Buffer
			var lines []Line
			s := testStream(tt.stream, 1024, &buf, &lines)
			// A read buffer, as while the pipe has data: without one the
			// message never takes the quoted-in-place fast path.
			s.buf = s.pool.get()
			defer s.pool.put(s.buf)
			s.emit([]byte(tt.line), false)

			var entry map[string]any
			if err := json.Unmarshal(buf.Bytes(), &entry); err != nil {
				t.Fatalf("log output is not JSON: %v\n%s", err, buf.Bytes())
			}
			if got := entry[zerolog.LevelFieldName]; got != tt.wantLevel.String() {
				t.Errorf("level = %v, want %v", got, tt.wantLevel)
			}
			if got, _ := entry[zerolog.MessageFieldName].(string); got != tt.wantMsg {
				t.Errorf("message = %q, want %q", got, tt.wantMsg)
			}
			// A JSON line without a message gets no message field, not "".
			if msg, ok := entry[zerolog.MessageFieldName]; ok && tt.wantMsg == "" {
				t.Errorf("message field = %q, want none", msg)
			}
			if got, _ := entry[fieldPanic].(bool); got != tt.wantPanic {
				t.Errorf("panic field = %v, want %v", got, tt.wantPanic)
			}
			if _, ok := entry[fieldJSON]; ok != tt.wantJSON {
				t.Errorf("fields present = %v, want %v", ok, tt.wantJSON)
			}
			if entry[fieldVM] != "vm" || entry[fieldPid] != 7.0 || entry[fieldStream] != tt.stream {
				t.Errorf("vm/pid/stream fields = %v/%v/%v", entry[fieldVM], entry[fieldPid], entry[fieldStream])
			}
			if len(lines) != 1 {
				t.Fatalf("OnOutput saw %d lines", len(lines))
			}
			l := lines[0]
			if l.Level != tt.wantLevel || l.Panic != tt.wantPanic || l.Stream != tt.stream || l.Partial || !utf8.ValidString(l.Text) {
				t.Errorf("Line = %+v", l)
			}
		})
	}
}

// runOverPipe starts s reading a new pipe. It returns the pipe's write
// end and a channel closed once s has read everything after that end is
// closed.
func runOverPipe(tb testing.TB, s *stream) (*os.File, <-chan struct{}) {
	tb.Helper()
	r, w, err := os.Pipe()
	if err != nil {
		tb.Fatal(err)
	}
	s.f = r
	done := make(chan struct{})
	go s.run(done)
	return w, done
}

// feed runs data through a stream over a real pipe and returns the lines.
func feed(t *testing.T, maxLine int, data ...[]byte) []Line {
	t.Helper()
	var lines []Line
	s := testStream(StreamStdout, maxLine, io.Discard, &lines)
	w, done := runOverPipe(t, s)
	for _, d := range data {
		if _, err := w.Write(d); err != nil {
			t.Fatal(err)
		}
	}
	w.Close()
	<-done
	return lines
}

// TestBridgeOnOutputBytes: with only OnOutputBytes set, a real pipe's
// lines (invalid UTF-8, chunks of a long line, a panic, a JSON log line)
// arrive as OnOutput would have seen them, and the text is lent, not
// copied: emitting a line allocates nothing.
func TestBridgeOnOutputBytes(t *testing.T) {
	t.Parallel()
	input := []byte("plain\nbad \xff\xfe utf8\r\n" + strings.Repeat("L", 10) + "\npanic: boom\n" +
		`{"level":"warn","msg":"w"}` + "\nend \xe2\x82")
	want := feed(t, 8, input)

	var got []Line
	cfg := &Config{MaxLineBytes: 8, OnOutputBytes: func(l LineBytes) { got = append(got, l.Line()) }}
	s := newStream(StreamStdout, nil, zerolog.Nop(), cfg, bufPoolFor(8), nil)
	w, done := runOverPipe(t, s)
	if _, err := w.Write(input); err != nil {
		t.Fatal(err)
	}
	w.Close()
	<-done
	if len(got) != len(want) || len(got) < 8 {
		t.Fatalf("OnOutputBytes saw %d lines, OnOutput %d: %+v", len(got), len(want), got)
	}
	for i := range got {
		// Time is per read; the two runs read at different times.
		got[i].Time, want[i].Time = time.Time{}, time.Time{}
		if got[i] != want[i] {
			t.Errorf("line %d: OnOutputBytes %+v, OnOutput %+v", i, got[i], want[i])
		}
	}
}

// TestEmitLendsText: handing a line to OnOutputBytes allocates nothing
// (OnOutput's string per line is what it saves), also for invalid UTF-8.
// Not parallel: AllocsPerRun counts the whole process's allocations.
func TestEmitLendsText(t *testing.T) {
	var seen int
	cfg := &Config{MaxLineBytes: DefaultMaxLineBytes, OnOutputBytes: func(l LineBytes) { seen += len(l.Text) }}
	s := newStream(StreamStdout, nil, zerolog.Nop(), cfg, defaultBufs, nil)
	s.buf = s.pool.get() // as while the pipe has data
	defer s.pool.put(s.buf)
	for _, line := range [][]byte{[]byte("ascii line"), []byte("bad \xff utf8"), []byte("panic: x")} {
		if n := testing.AllocsPerRun(100, func() { s.emit(line, false) }); n != 0 {
			t.Errorf("emit(%q) with OnOutputBytes allocated %v times per line", line, n)
		}
	}
	if seen == 0 {
		t.Error("OnOutputBytes was not called")
	}
}

// TestAppendValidUTF8 checks the byte version against strings.ToValidUTF8
// (which validText and so Line.Text use).
func TestAppendValidUTF8(t *testing.T) {
	t.Parallel()
	for _, in := range []string{
		"", "ascii", "é€😀", "\xff", "a\xff\xfeb", "\xe2\x82", "\xe2\x82\xac\xe2", "\xed\xa0\x80 surrogate",
		"\xf4\x90\x80\x80 too big", "\xc0\xaf overlong", "\uFFFD\xff\uFFFD", "\x00\x7f\x80",
	} {
		got := appendValidUTF8([]byte("prefix:"), []byte(in))
		if want := "prefix:" + strings.ToValidUTF8(in, "\uFFFD"); string(got) != want {
			t.Errorf("appendValidUTF8(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestBridgeSplitsLines(t *testing.T) {
	t.Parallel()
	type chunk struct {
		text    string
		partial bool
	}
	tests := []struct {
		name string
		max  int
		data []string
		want []chunk
	}{
		{"lines", 8, []string{"a\nbb\n\nccc"}, []chunk{{"a", false}, {"bb", false}, {"", false}, {"ccc", false}}},
		{"across writes", 8, []string{"ab", "cd\ne", "f\n"}, []chunk{{"abcd", false}, {"ef", false}}},
		{"exactly max", 4, []string{"abcd\n"}, []chunk{{"abcd", false}}},
		{"max plus one", 4, []string{"abcde\n"}, []chunk{{"abcd", true}, {"e", false}}},
		{"long", 4, []string{"abcdefghij\nk\n"}, []chunk{{"abcd", true}, {"efgh", true}, {"ij", false}, {"k", false}}},
		{"long at eof", 4, []string{"abcdefgh"}, []chunk{{"abcd", true}, {"efgh", false}}},
		{"utf8 kept whole", 4, []string{"ab€cd\n"}, []chunk{{"ab", true}, {"€c", true}, {"d", false}}},
		{"crlf", 8, []string{"a\r\nb\r\n"}, []chunk{{"a", false}, {"b", false}}},
		// The "\r" of a "\r\n" is part of the line end, not of the text.
		{"crlf exactly max", 8, []string{"abcdefgh\r\n"}, []chunk{{"abcdefgh", false}}},
		{"crlf exactly max, split before lf", 8, []string{"abcdefgh\r", "\nx\n"}, []chunk{{"abcdefgh", false}, {"x", false}}},
		{"crlf exactly max at eof", 8, []string{"abcdefgh\r"}, []chunk{{"abcdefgh", false}}},
		{"crlf ending a long line", 4, []string{"abcdefgh\r\n"}, []chunk{{"abcd", true}, {"efgh", false}}},
		{"cr inside at max", 4, []string{"abcd\ref\n"}, []chunk{{"abcd", true}, {"\ref", false}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			var data [][]byte
			for _, d := range tt.data {
				data = append(data, []byte(d))
			}
			var got []chunk
			for _, l := range feed(t, tt.max, data...) {
				got = append(got, chunk{l.Text, l.Partial})
			}
			if len(got) != len(tt.want) {
				t.Fatalf("got %+v, want %+v", got, tt.want)
			}
			for i := range got {
				if got[i] != tt.want[i] {
					t.Errorf("chunk %d = %+v, want %+v", i, got[i], tt.want[i])
				}
			}
		})
	}
}

func TestBridgePanicChunksStayFlagged(t *testing.T) {
	t.Parallel()
	lines := feed(t, 8, []byte("panic: something very long\nnext\n"))
	for _, l := range lines[:len(lines)-1] {
		if !l.Panic || l.Level != zerolog.ErrorLevel {
			t.Errorf("chunk %+v of a panic line is not flagged", l)
		}
	}
	if last := lines[len(lines)-1]; last.Text != "next" || last.Panic {
		t.Errorf("line after the panic: %+v", last)
	}
}

// TestBridgeLongLineMemory pushes a 10 MB line through the bridge and
// checks that it allocated a small fraction of that: lines are chunked
// as they stream by, never accumulated. Not parallel: it reads the
// process-wide allocation counter.
func TestBridgeLongLineMemory(t *testing.T) {
	const size = 10 << 20
	block := bytes.Repeat([]byte("x"), 1<<20)
	var lines, total int
	var s *stream
	{
		var ls []Line
		s = testStream(StreamStdout, DefaultMaxLineBytes, io.Discard, &ls)
		s.onOutput = func(l Line) { lines++; total += len(l.Text) }
	}
	r, w, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	s.f = r
	done := make(chan struct{})
	writeErr := make(chan error, 1)
	go func() {
		var err error
		for range size / len(block) {
			if _, err = w.Write(block); err != nil {
				break
			}
		}
		if err == nil {
			_, err = w.Write([]byte("\n"))
		}
		w.Close()
		writeErr <- err
	}()

	s.run(done)
	if err := <-writeErr; err != nil {
		t.Fatal(err)
	}
	if total != size || lines != (size+DefaultMaxLineBytes-1)/DefaultMaxLineBytes {
		t.Errorf("got %d bytes in %d chunks", total, lines)
	}
	// Again without OnOutput (whose strings are the caller's) and with
	// logging off (zerolog does not pool event buffers above 64 KiB, so
	// each full chunk costs one short-lived buffer): the bridge itself
	// must allocate next to nothing.
	s.onOutput = nil
	s.log = zerolog.Nop()
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	r2, w2, _ := os.Pipe()
	s.f = r2
	done2 := make(chan struct{})
	go func() {
		for range size / len(block) {
			_, _ = w2.Write(block)
		}
		w2.Close()
	}()
	s.run(done2)
	runtime.ReadMemStats(&after)
	if alloc := after.TotalAlloc - before.TotalAlloc; alloc > 1<<20 {
		t.Errorf("bridging a %d-byte line allocated %d bytes", size, alloc)
	}
}

func TestTailKeepsLastLinesAndPanic(t *testing.T) {
	t.Parallel()
	tl := newTail(3)
	tl.add([]byte("one"), false)
	tl.add([]byte("panic: boom"), true)
	for _, l := range []string{"goroutine 1 [running]:", "main.main()", "exit status 2"} {
		tl.add([]byte(l), false)
	}
	tl.add([]byte(strings.Repeat("y", 2*tailLineCap)), false)
	got := tl.snapshot()
	want := []string{"panic: boom", "main.main()", "exit status 2", strings.Repeat("y", tailLineCap)}
	if strings.Join(got, "|") != strings.Join(want, "|") {
		t.Errorf("snapshot = %q, want %q", got, want)
	}
	empty := newTail(0)
	empty.add([]byte("x"), false)
	if got := empty.snapshot(); len(got) != 0 {
		t.Errorf("zero-line tail kept %q", got)
	}
}

// FuzzParseJSONLine checks the scanner against encoding/json: whatever it
// accepts must be a valid JSON object.
func FuzzParseJSONLine(f *testing.F) {
	for _, s := range []string{
		`{"level":"info","message":"x"}`, `{"level":"info","a":[1,2.5e3,-0,true,null,{"b":"\u00e9"}]}`,
		`{"level":40}`, `{"level":"info",}`, `{"level":"info" "x":1}`, `{"level":01}`, `{"level":"info","s":"\x"}`,
		` {"level":"warn"} `, `{}`, `[]`, `{"level":"info","n":1.}`,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		if _, ok := parseJSONLine(b); ok && !json.Valid(b) {
			t.Errorf("accepted invalid JSON %q", b)
		}
	})
}

// BenchmarkBridge measures the output bridge end to end: lines written
// into a real pipe, read, classified and logged by zerolog (JSON, with a
// timestamp) into a file. MB/s is the plugin's output rate. The
// "logtime" cases stamp lines with logtime.Hook instead of zerolog's
// Timestamp.
func BenchmarkBridge(b *testing.B) {
	for _, bc := range []struct {
		name     string
		lineSize int
		json     bool
		sink     string
		logtime  bool
	}{
		{"100B/buffered-file", 100, false, "buffered", false},
		{"100B/buffered-file/logtime", 100, false, "buffered", true},
		{"1KiB/buffered-file", 1024, false, "buffered", false},
		{"1KiB/buffered-file/logtime", 1024, false, "buffered", true},
		{"100B-json/buffered-file", 100, true, "buffered", false},
		{"100B/file", 100, false, "file", false},
		{"1KiB/file", 1024, false, "file", false},
		{"100B/discard", 100, false, "discard", false},
	} {
		b.Run(bc.name, func(b *testing.B) { benchBridge(b, bc.lineSize, bc.json, bc.sink, bc.logtime) })
	}
}

// benchLogger is the logger of the bridge benchmarks: JSON with a time, a
// vm and a pid field.
func benchLogger(w io.Writer, useLogtime bool) zerolog.Logger {
	log := zerolog.New(w).Level(zerolog.InfoLevel)
	if useLogtime {
		return log.Hook(&logtime.Hook{}).With().Str(fieldVM, "bench").Int(fieldPid, 1).Logger()
	}
	return log.With().Timestamp().Str(fieldVM, "bench").Int(fieldPid, 1).Logger()
}

func benchBridge(b *testing.B, lineSize int, jsonLines bool, sink string, useLogtime bool) {
	line := bytes.Repeat([]byte("b"), lineSize-1)
	if jsonLines {
		line = []byte(`{"level":"info","message":"` + strings.Repeat("j", max(lineSize-32, 1)) + `"}`)
	}
	line = append(line, '\n')
	block := bytes.Repeat(line, (1<<20)/len(line))

	var w io.Writer = io.Discard
	var flush func() error
	if sink != "discard" {
		f, err := os.Create(filepath.Join(b.TempDir(), "log"))
		if err != nil {
			b.Fatal(err)
		}
		b.Cleanup(func() { f.Close() })
		w = f
		if sink == "buffered" {
			bw := bufio.NewWriterSize(f, 1<<20)
			w, flush = bw, bw.Flush
		}
	}
	s := newStream(StreamStdout, nil, benchLogger(w, useLogtime), &Config{MaxLineBytes: DefaultMaxLineBytes}, defaultBufs, nil)
	pw, done := runOverPipe(b, s)
	b.SetBytes(int64(len(block)))
	b.ReportAllocs()
	b.ResetTimer()
	for range b.N {
		if _, err := pw.Write(block); err != nil {
			b.Fatal(err)
		}
	}
	pw.Close()
	<-done
	if flush != nil {
		if err := flush(); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkEmit measures the bridge's CPU per line without the pipe: one
// line classified and logged by zerolog (JSON, with a timestamp) into
// memory, on the calling goroutine; with zerolog's Timestamp, and with
// logtime.Hook (which uses the line's read time: one per read, here one for
// all lines).
func BenchmarkEmit(b *testing.B) {
	for _, size := range []int{128, 1024} {
		for _, useLogtime := range []bool{false, true} {
			name := fmt.Sprintf("%dB/zerolog-time", size)
			if useLogtime {
				name = fmt.Sprintf("%dB/logtime", size)
			}
			b.Run(name, func(b *testing.B) { benchEmit(b, size, useLogtime) })
		}
	}
}

func benchEmit(b *testing.B, size int, useLogtime bool) {
	line := bytes.Repeat([]byte("e"), size-1)
	var out bytes.Buffer
	s := newStream(StreamStdout, nil, benchLogger(&out, useLogtime), &Config{MaxLineBytes: DefaultMaxLineBytes}, defaultBufs, nil)
	s.buf = s.pool.get() // as while the pipe has data
	defer s.pool.put(s.buf)
	b.SetBytes(int64(size))
	b.ReportAllocs()
	for b.Loop() {
		s.emit(line, false)
		if out.Len() > 1<<20 {
			out.Reset()
		}
	}
}

func BenchmarkParseJSONLine(b *testing.B) {
	line := []byte(`{"level":"info","time":"2026-01-02T03:04:05Z","caller":"vm/vm.go:123","chain":"C","height":12345,"message":"accepted block","tags":["a","b"]}`)
	b.SetBytes(int64(len(line)))
	b.ReportAllocs()
	for range b.N {
		if _, ok := parseJSONLine(line); !ok {
			b.Fatal("not parsed")
		}
	}
}

// TestJSONSafe: the word-at-a-time check agrees with zerolog's escape
// table (bytes 0x20-0x7e except '"' and '\\' pass as they are) for every
// byte value at every position of lines up to 79 bytes (short lines,
// 32-byte blocks, words, the overlapping last word), and emit writes
// the same log entry through its fast path as through zerolog's Bytes.
func TestJSONSafe(t *testing.T) {
	t.Parallel()
	plain := func(c byte) bool { return c >= 0x20 && c <= 0x7e && c != '"' && c != '\\' }
	for n := range 80 { // the short path, 32-byte blocks, words, the last word
		for pos := range n {
			for v := range 256 {
				b := bytes.Repeat([]byte("a"), n)
				b[pos] = byte(v)
				if got, want := jsonSafe(b), plain(byte(v)); got != want {
					t.Fatalf("jsonSafe(%q) = %v, want %v", b, got, want)
				}
			}
		}
	}
	for _, line := range []string{"", "a", "plain line of text", strings.Repeat("0123456789", 102) + "ab", strings.Repeat("x", 70<<10), `with "quotes"`, "tab\there", "del\x7f", "é"} {
		// With the read buffer's free space as scratch (the fast path),
		// and with too little of it (zerolog's Bytes).
		for _, room := range []bool{true, false} {
			var got, want bytes.Buffer
			var lines []Line
			s := testStream(StreamStdout, DefaultMaxLineBytes, &got, &lines)
			s.buf = s.pool.get()
			if !room {
				s.end = len(s.buf) - 1
			}
			s.emit([]byte(line), false)
			s.pool.put(s.buf)
			ref := zerolog.New(&want).With().Str(fieldVM, "vm").Int(fieldPid, 7).Str(fieldStream, StreamStdout).Logger()
			ref.Info().Bytes(zerolog.MessageFieldName, []byte(line)).Send()
			if got.String() != want.String() {
				t.Errorf("emit(%.40q), room %v: logged\n%s want\n%s", line, room, got.String(), want.String())
			}
		}
	}
}

// TestBridgeStampsReadTime: with a logtime.Hook on the logger, every
// line's event carries the time its read happened (Line.Time, to the
// nanosecond), lines of one read share it, and lines of a later read get a
// later one. Not parallel: it sets zerolog's global time format.
func TestBridgeStampsReadTime(t *testing.T) {
	defer func(f string) { zerolog.TimeFieldFormat = f }(zerolog.TimeFieldFormat)
	zerolog.TimeFieldFormat = time.RFC3339Nano

	var logged bytes.Buffer
	var times []time.Time
	seen := make(chan struct{}, 3)
	cfg := &Config{MaxLineBytes: DefaultMaxLineBytes, OnOutputBytes: func(l LineBytes) {
		times = append(times, l.Time)
		seen <- struct{}{}
	}}
	log := zerolog.New(&logged).Hook(&logtime.Hook{})
	s := newStream(StreamStdout, nil, log, cfg, defaultBufs, nil)
	w, done := runOverPipe(t, s)
	if _, err := w.Write([]byte("a\nb\n")); err != nil {
		t.Fatal(err)
	}
	// Wait for the first read's lines before the second write, so the two
	// writes cannot arrive in one read.
	for range 2 {
		select {
		case <-seen:
		case <-time.After(10 * time.Second):
			t.Fatal("the first two lines were not read")
		}
	}
	time.Sleep(2 * time.Millisecond)
	if _, err := w.Write([]byte("c\n")); err != nil {
		t.Fatal(err)
	}
	w.Close()
	<-done

	events := bytes.Split(bytes.TrimSpace(logged.Bytes()), []byte("\n"))
	if len(events) != 3 || len(times) != 3 {
		t.Fatalf("got %d events and %d lines, want 3: %s", len(events), len(times), logged.Bytes())
	}
	for i, ev := range events {
		var fields struct{ Time string }
		if err := json.Unmarshal(ev, &fields); err != nil {
			t.Fatal(err)
		}
		if want := times[i].Format(time.RFC3339Nano); fields.Time != want {
			t.Errorf("line %d: time %q, want the read time %q", i, fields.Time, want)
		}
	}
	if !times[0].Equal(times[1]) || !times[2].After(times[1]) {
		t.Errorf("read times %v: want the first two equal and the third later", times)
	}
}
