//go:build linux

package subprocess

import (
	"bufio"
	"bytes"
	"encoding/json"
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/rs/zerolog"
)

// fuzzMaxLine bounds the fuzzed MaxLineBytes so that every chunk fits in
// a stderr tail line (tailLineCap) and the tail records the raw bytes of
// every chunk the bridge emitted.
const fuzzMaxLine = tailLineCap

// FuzzBridge feeds arbitrary bytes (invalid UTF-8, huge lines, CRLF,
// JSON log lines with odd levels) through the output bridge over a real
// pipe, in writes of a fuzzed size, with a fuzzed MaxLineBytes. The bridge
// must not panic, lose or invent a byte (the raw chunks it emitted,
// concatenated, are the input minus each "\n" and the "\r" of each "\r\n"
// or of a final "\r"), emit one non-partial line per input line, keep
// every chunk within MaxLineBytes, hand OnOutput valid UTF-8 (and
// OnOutputBytes the same line right after), and write only valid JSON log
// entries.
func FuzzBridge(f *testing.F) {
	for _, seed := range []struct {
		data    string
		maxLine uint16
		write   uint16
	}{
		{"hello\nworld\n", 64, 0},
		{"no newline at the end", 8, 3},
		{"crlf\r\nline\r\n\r\n\r", 16, 1},
		{"\n\n\n", 1, 0},
		{"bad \xff\xfe utf8\n\xc3\n\xe2\x82\n", 4, 2},
		{"é€😀é€😀é€😀é€😀\n", 5, 1},
		// Longer than the pipe and than the reader's spare room (readRoom).
		{strings.Repeat("L", 100<<10) + "\n" + strings.Repeat("x", 5000), 1024, 4096},
		{`{"level":"info","message":"ok"}` + "\n", 1024, 0},
		{`{"level":99,"msg":"numeric"}` + "\n" + `{"level":-1}` + "\n" + `{"level":1e308}` + "\n", 1024, 7},
		{`{"level":null}` + "\n" + `{"level":{"nested":"error"}}` + "\n" + `{"level":["warn"]}` + "\n", 1024, 0},
		{`{"level":"\u0065rror","msg":"escaped level"}` + "\n" + `{"level":"ERROR","message":"\ud800"}` + "\n", 1024, 0},
		{`{"level":"info","level":"error","msg":"twice"}` + "\n" + `{"level":"warn","msg":"x"` + "\n", 1024, 0},
		{`{"level":"error","msg":"` + strings.Repeat("long ", 400) + `"}` + "\n", 512, 100},
		{"{\"level\":\"info\",\"msg\":\"\xff\"}\n{\"level\":\"info\"}\r\n", 1024, 0},
		{"panic: boom\n\ngoroutine 1 [running]:\nmain.main()\n", 6, 0},
		{"fatal error: all goroutines are asleep\n", 1024, 0},
		{"\x00\x01\x02\x7f\x80\xc0\xff\n", 2, 1},
	} {
		f.Add([]byte(seed.data), seed.maxLine, seed.write)
	}
	f.Fuzz(func(t *testing.T, data []byte, maxLine, write uint16) {
		limit := 1 + int(maxLine)%fuzzMaxLine
		if len(data) > 16<<10 {
			// Big inputs in small chunks only cost time per execution (and
			// make minimizing crawl); small inputs cover small chunks.
			limit = max(limit, fuzzMaxLine/2)
		}
		chunk := 1 + int(write)
		raw, lines, logOut := fuzzFeed(t, data, limit, chunk)

		if want := bridgeExpect(data); !bytes.Equal(bytes.Join(raw, nil), want) {
			t.Fatalf("bridge emitted %q, want %q", bytes.Join(raw, nil), want)
		}
		if len(lines) != len(raw) {
			t.Fatalf("OnOutput saw %d lines, the tail %d", len(lines), len(raw))
		}
		complete := 0
		for i, l := range lines {
			if len(raw[i]) > limit {
				t.Errorf("line %d is %d bytes, over MaxLineBytes %d", i, len(raw[i]), limit)
			}
			if !utf8.ValidString(l.Text) {
				t.Errorf("line %d text is not valid UTF-8: %q", i, l.Text)
			}
			if l.Text != validText(raw[i]) {
				t.Errorf("line %d: OnOutput text %q, emitted bytes %q", i, l.Text, raw[i])
			}
			if l.Stream != StreamStderr {
				t.Errorf("line %d: stream %q", i, l.Stream)
			}
			if _, err := zerolog.ParseLevel(l.Level.String()); err != nil || l.Level < zerolog.TraceLevel || l.Level > zerolog.PanicLevel {
				t.Errorf("line %d: level %v", i, l.Level)
			}
			if !l.Partial {
				complete++
			}
		}
		if want := countLines(data); complete != want {
			t.Errorf("%d complete lines, want %d", complete, want)
		}
		sc := bufio.NewScanner(bytes.NewReader(logOut))
		sc.Buffer(nil, 16<<20)
		entries := 0
		for sc.Scan() {
			entries++
			if !json.Valid(sc.Bytes()) {
				t.Errorf("log entry is not JSON: %q", sc.Bytes())
			}
		}
		if entries != len(lines) {
			t.Errorf("%d log entries for %d lines", entries, len(lines))
		}
	})
}

// fuzzFeed writes data into a pipe in writes of at most chunk bytes and
// runs a stderr stream over it. It returns the raw bytes of every emitted
// chunk (recorded by the tail), the lines OnOutput saw and the log.
func fuzzFeed(t *testing.T, data []byte, maxLine, chunk int) ([][]byte, []Line, []byte) {
	t.Helper()
	var (
		lines []Line
		log   bytes.Buffer
	)
	cfg := &Config{
		MaxLineBytes: maxLine,
		OnOutput:     func(l Line) { lines = append(lines, l) },
		// Called right after OnOutput with the same line, text borrowed.
		OnOutputBytes: func(lb LineBytes) {
			if len(lines) == 0 {
				t.Errorf("OnOutputBytes before OnOutput: %q", lb.Text)
				return
			}
			if got, want := lb.Line(), lines[len(lines)-1]; got != want {
				t.Errorf("OnOutputBytes saw %+v, OnOutput %+v", got, want)
			}
		},
	}
	tl := newTail(len(data) + 1) // room for every chunk
	s := newStream(StreamStderr, nil, zerolog.New(&log), cfg, bufPoolFor(maxLine), tl)
	w, done := runOverPipe(t, s)
	for rest := data; len(rest) > 0; {
		n := min(chunk, len(rest))
		if _, err := w.Write(rest[:n]); err != nil {
			t.Fatal(err)
		}
		rest = rest[n:]
	}
	w.Close()
	<-done
	if tl.seq > uint64(len(tl.lines)) {
		t.Fatalf("%d chunks overflowed the %d-line tail", tl.seq, len(tl.lines))
	}
	raw := make([][]byte, tl.n)
	copy(raw, tl.lines[:tl.n])
	return raw, lines, log.Bytes()
}

// bridgeExpect is what the bridge's lines must add up to: data without its
// line ends ("\n", "\r\n") and without a "\r" ending the last, unterminated
// line.
func bridgeExpect(data []byte) []byte {
	var out []byte
	for line := range bytes.SplitSeq(data, []byte("\n")) {
		out = append(out, bytes.TrimSuffix(line, []byte("\r"))...)
	}
	return out
}

// countLines counts the lines in data: one per "\n", plus an unterminated
// last one.
func countLines(data []byte) int {
	n := bytes.Count(data, []byte("\n"))
	if len(data) > 0 && data[len(data)-1] != '\n' {
		n++
	}
	return n
}
