//go:build unix

package logline

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"reflect"
	"runtime"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"
	"unicode/utf8"
	"unsafe"

	"github.com/rs/zerolog"
)

// pipeReader starts a reader of stream over a new pipe (NewPipe), as the
// engine does (Start). It returns the write end and a channel closed once the
// reader has ended.
func pipeReader(tb testing.TB, b *Bridge, stream string) (*Reader, *os.File, <-chan struct{}) {
	return pipeReaderMode(tb, b, stream, false)
}

// pipeReaderMode is pipeReader, with Run on a goroutine of its own if run.
func pipeReaderMode(tb testing.TB, b *Bridge, stream string, run bool) (*Reader, *os.File, <-chan struct{}) {
	tb.Helper()
	r, w, err := NewPipe()
	if err != nil {
		tb.Fatal(err)
	}
	rd := b.Reader(stream, r)
	done := make(chan struct{})
	if run {
		go func() { defer close(done); rd.Run() }()
	} else {
		rd.Start(func() { close(done) })
	}
	return rd, w, done
}

// testPipe is NewPipe for a test that drives its reader itself: both
// ends are closed when the test ends, whether or not a Run or the test
// closed one already.
func testPipe(tb testing.TB) (r, w *os.File) {
	tb.Helper()
	r, w, err := NewPipe()
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() {
		_ = r.Close()
		_ = w.Close()
	})
	return r, w
}

// feed runs data through a stdout reader and returns clones of its lines
// and the log.
func feed(t *testing.T, o Options, data ...string) ([]Line, []byte) {
	t.Helper()
	return feedMode(t, false, o, data...)
}

// feedMode is feed, through Run if run.
func feedMode(t *testing.T, run bool, o Options, data ...string) ([]Line, []byte) {
	t.Helper()
	var (
		lines []Line
		log   bytes.Buffer
	)
	o.Log = zerolog.New(&log).With().Str("vm", "vm").Int("pid", 7).Logger()
	o.OnLine = func(l *Line) { lines = append(lines, l.Clone()) }
	_, w, done := pipeReaderMode(t, NewBridge(o), Stdout, run)
	for _, d := range data {
		if _, err := w.WriteString(d); err != nil {
			t.Fatal(err)
		}
	}
	w.Close()
	<-done
	return lines, log.Bytes()
}

func TestReaderSplitsLines(t *testing.T) {
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
		{"long at eof", 4, []string{"abcdefgh"}, []chunk{{"abcd", true}, {"efgh", false}}},
		{"utf8 kept whole", 4, []string{"ab€cd\n"}, []chunk{{"ab", true}, {"€c", true}, {"d", false}}},
		{"crlf exactly max, split before lf", 8, []string{"abcdefgh\r", "\nx\n"}, []chunk{{"abcdefgh", false}, {"x", false}}},
		{"crlf ending a long line", 4, []string{"abcdefgh\r\n"}, []chunk{{"abcd", true}, {"efgh", false}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			lines, _ := feed(t, Options{MaxLineBytes: tt.max}, tt.data...)
			var got []chunk
			for _, l := range lines {
				got = append(got, chunk{string(l.Text), l.Partial})
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

// An hclog record whose values hold newlines is one line, its values
// joined again; the lines are go-hclog v1.6.3's, colour codes and all.
func TestReaderHclogMultiLine(t *testing.T) {
	t.Parallel()
	type rec struct{ format, msg, fields string }
	tests := []struct {
		name string
		data string
		want []rec
	}{
		{"value then pairs",
			"2026-12-07T04:14:51.788Z [INFO]  plugin.x: config loaded:\n  cfg=\n  | line one\n  | line two\n   n=1\nafter\n",
			[]rec{{"hclog", "config loaded", `{"cfg":"line one\nline two","n":"1"}`}, {"plain", "after", ""}}},
		{"pairs then value at the end",
			"2026-12-07T04:14:51.822Z [ERROR] plugin.x: stack: err=boom\n  trace=\n  | goroutine 1:\n  | \tmain.go:12\n  \n",
			[]rec{{"hclog", "stack", `{"err":"boom","trace":"goroutine 1:\n\tmain.go:12"}`}}},
		{"two values and an empty value line",
			"2026-12-07T04:16:56.760Z [WARN]  plugin.x: two:\n  a=\n  | 1\n  | 2\n  \n  b=\n  | 3\n  | \n  | 4\n   c=\"x y\"\n" +
				"2026-12-07T04:16:56.761Z [INFO]  plugin.x: then: k=v\n",
			[]rec{{"hclog", "two", `{"a":"1\n2","b":"3\n\n4","c":"x y"}`}, {"hclog", "then", `{"k":"v"}`}}},
		{"no time",
			"[INFO]  no name:\n  v=\n  | x\n  | y\n   after=2\n",
			[]rec{{"hclog", "no name", `{"v":"x\ny","after":"2"}`}}},
		{"colour",
			"2026-12-07T04:16:56.761Z \x1b[91m[ERROR] plugin.x: coloured: \x1b[2;1mn\x1b[0m\x1b[2m=\x1b[0m1\n  \x1b[2;1mcfg\x1b[0m\x1b[2m=\n\x1b[0m\x1b[2m  | \x1b[0ma\n\x1b[2m  | \x1b[0mb\n  \n",
			[]rec{{"hclog", "coloured", `{"n":"1","cfg":"a\nb"}`}}},
		{"unfinished block stays lines",
			"[INFO]  x: m:\n  v=\n  | x\n",
			[]rec{{"hclog", "m", ""}, {"plain", "  v=", ""}, {"plain", "  | x", ""}}},
		{"indented text after a plain hclog line",
			"[INFO]  m: k=v\n  not a block\n",
			[]rec{{"hclog", "m", `{"k":"v"}`}, {"plain", "  not a block", ""}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			lines, log := feed(t, Options{}, tt.data)
			var got []rec
			for _, l := range lines {
				got = append(got, rec{l.Format.String(), string(l.Message), strings.ReplaceAll(strings.ReplaceAll(string(l.Fields), `\u000a`, `\n`), `\u0009`, `\t`)})
				if l.Fields != nil && !json.Valid(l.Fields) {
					t.Errorf("fields %q are not JSON", l.Fields)
				}
			}
			if len(got) != len(tt.want) {
				t.Fatalf("got %+v, want %+v", got, tt.want)
			}
			for i := range got {
				if got[i] != tt.want[i] {
					t.Errorf("line %d = %+v, want %+v", i, got[i], tt.want[i])
				}
			}
			if n := bytes.Count(log, []byte("\n")); n != len(tt.want) {
				t.Errorf("%d events for %d lines:\n%s", n, len(tt.want), log)
			}
		})
	}
}

// A panic and its goroutine dump are one error event with the dump in a
// field; the normal lines around it stay lines of their own.
func TestReaderGroupsPanic(t *testing.T) {
	t.Parallel()
	dump := "\ngoroutine 1 [running]:\nmain.(*vm).init(0xc000010000, {0x4a2c40?, 0x4e1a18?})\n\t/src/vm.go:42 +0x1d\nmain.main()\n\t/src/main.go:9 +0x25\ncreated by main.start in goroutine 1\n\t/src/main.go:20 +0x3c\n"
	lines, log := feed(t, Options{},
		"before\n",
		"panic: runtime error: invalid memory address or nil pointer dereference\n[signal SIGSEGV: segmentation violation code=0x1 addr=0x0 pc=0x48f0d3]\n"+dump,
		"INFO [12-06|21:46:28.000] after the dump\n")
	if len(lines) != 3 {
		t.Fatalf("%d lines, want 3: %q", len(lines), texts(lines))
	}
	p := lines[1]
	if !p.Panic || p.Level != zerolog.ErrorLevel || string(p.Message) != "panic: runtime error: invalid memory address or nil pointer dereference" {
		t.Errorf("panic line %+v", p)
	}
	wantDump := "[signal SIGSEGV: segmentation violation code=0x1 addr=0x0 pc=0x48f0d3]\n" + strings.TrimSuffix(dump, "\n")
	if string(p.Dump) != wantDump {
		t.Errorf("dump %q, want %q", p.Dump, wantDump)
	}
	if string(lines[0].Text) != "before" || string(lines[2].Message) != "after the dump" || lines[2].Format != Geth {
		t.Errorf("lines around the panic: %q", texts(lines))
	}
	events := bytes.Split(bytes.TrimSpace(log), []byte("\n"))
	if len(events) != 3 {
		t.Fatalf("%d events, want 3", len(events))
	}
	var ev map[string]any
	if err := json.Unmarshal(events[1], &ev); err != nil {
		t.Fatal(err)
	}
	if ev["level"] != "error" || ev["panic"] != true || ev["dump"] != wantDump {
		t.Errorf("panic event %s", events[1])
	}
}

// A dump larger than DumpBytes is cut: the event holds what fitted, and the
// lines after the cut are still handed on, as is the normal line after.
func TestReaderCutsLongDump(t *testing.T) {
	t.Parallel()
	var b strings.Builder
	b.WriteString("fatal error: concurrent map writes\n")
	for range 100 {
		b.WriteString("\t/src/file.go:1 +0x1\n")
	}
	b.WriteString("normal\n")
	lines, log := feed(t, Options{DumpBytes: 200}, b.String())
	if !lines[0].Panic || len(lines[0].Dump) > 200 || len(lines[0].Dump) == 0 {
		t.Fatalf("first line %+v", lines[0])
	}
	kept := bytes.Count(lines[0].Dump, []byte("\n")) + 1
	if got, want := len(lines), 1+(100-kept)+1; got != want {
		t.Errorf("%d lines, want %d", got, want)
	}
	if string(lines[len(lines)-1].Text) != "normal" {
		t.Errorf("last line %q", lines[len(lines)-1].Text)
	}
	if !bytes.Contains(log, []byte(`"dump_cut":true`)) {
		t.Errorf("no dump_cut in the log: %s", log[:200])
	}
}

// A panic whose dump stops while the pipe stays open is handed on after
// the dump's idle bound, without waiting for EOF.
func TestReaderPanicIdleBound(t *testing.T) {
	t.Parallel()
	got := make(chan Line, 4)
	b := NewBridge(Options{OnLine: func(l *Line) { got <- l.Clone() }})
	_, w, done := pipeReader(t, b, Stderr)
	if _, err := w.WriteString("panic: boom\n\ngoroutine 1 [running]:\n"); err != nil {
		t.Fatal(err)
	}
	select {
	case l := <-got:
		if !l.Panic || string(l.Dump) != "\ngoroutine 1 [running]:" {
			t.Errorf("line %+v", l)
		}
	case <-time.After(30 * time.Second):
		w.Close()
		<-done
		t.Fatal("the panic was not handed on while the pipe stayed open")
	}
	// The tail takes the line after OnLine returns: once the reader has
	// ended it must hold the panic.
	w.Close()
	<-done
	if _, ok := b.Tail().Panic(); !ok {
		t.Error("the tail did not keep the panic")
	}
}

// The log event: the plugin's fields nested under "fields", never
// overwriting the engine's; vm, pid, stream kept; plugin time, logger and
// caller in their own fields; no ESC anywhere.
func TestReaderEvent(t *testing.T) {
	t.Parallel()
	_, log := feed(t, Options{Location: time.UTC},
		`{"level":"warn","vm":"fake","pid":1,"stream":"x","time":"2026-12-06T21:46:30.5Z","msg":"slow","logger":"chain"}`+"\n",
		"[12-06|21:46:25.946] \x1b[0;33mERROR\x1b[0;0m <X Chain> vm/vm.go:252 failed {\"error\": \"\\u001b[31mbad\"}\n")
	events := bytes.Split(bytes.TrimSpace(log), []byte("\n"))
	if len(events) != 2 {
		t.Fatalf("%d events: %s", len(events), log)
	}
	var ev struct {
		VM         string         `json:"vm"`
		Pid        int            `json:"pid"`
		Stream     string         `json:"stream"`
		Level      string         `json:"level"`
		Message    string         `json:"message"`
		PluginTime string         `json:"plugin_time"`
		Logger     string         `json:"logger"`
		Caller     string         `json:"caller"`
		Fields     map[string]any `json:"fields"`
	}
	if err := json.Unmarshal(events[0], &ev); err != nil {
		t.Fatal(err)
	}
	if ev.VM != "vm" || ev.Pid != 7 || ev.Stream != "stdout" || ev.Level != "warn" || ev.Message != "slow" ||
		ev.PluginTime != "2026-12-06T21:46:30.500Z" || ev.Logger != "chain" || ev.Fields["vm"] != "fake" || len(ev.Fields) != 3 {
		t.Errorf("event %s", events[0])
	}
	if err := json.Unmarshal(events[1], &ev); err != nil {
		t.Fatal(err)
	}
	if ev.Level != "error" || ev.Message != "failed" || ev.Logger != "X Chain" || ev.Caller != "vm/vm.go:252" || !strings.HasPrefix(ev.PluginTime, "2026-12-06T21:46:25.946") {
		t.Errorf("event %s", events[1])
	}
	if bytes.Contains(log, []byte{0x1b}) || bytes.Contains(bytes.ToLower(log), []byte(`\u001b`)) {
		t.Errorf("ESC in the log: %s", log)
	}
}

// The tail keeps both streams' last lines in the order they were read.
func TestTailBothStreams(t *testing.T) {
	t.Parallel()
	b := NewBridge(Options{TailLines: 3})
	_, out, outDone := pipeReader(t, b, Stdout)
	_, errW, errDone := pipeReader(t, b, Stderr)
	out.WriteString("one\n")
	out.Close()
	<-outDone
	errW.WriteString("two\nthree\n")
	errW.Close()
	<-errDone
	got := b.Tail().Lines()
	want := []TailLine{{Stdout, "one"}, {Stderr, "two"}, {Stderr, "three"}}
	if len(got) != len(want) {
		t.Fatalf("tail %+v, want %+v", got, want)
	}
	for i := range want {
		if got[i] != want[i] {
			t.Errorf("tail %+v, want %+v", got, want)
		}
	}
}

// Lines the parser cleans (colour codes) go to the tail without a copy,
// their buffers passing between the parsers of both streams and the tail:
// every line is still logged and kept as it was, whatever the others.
func TestTailKeepsCleanedLines(t *testing.T) {
	t.Parallel()
	var seen []string
	b := NewBridge(Options{TailLines: 5, OnLine: func(l *Line) { seen = append(seen, string(l.Text)) }})
	line := func(i, n int) (raw, clean string) {
		text := fmt.Sprintf("%03d %s", i, strings.Repeat(string(rune('a'+i%26)), n))
		return "\x1b[0;33m" + text[:2] + "\x1b[0;0m" + text[2:], text
	}
	var want []string
	write := func(w *os.File, from, to int) {
		for i := from; i < to; i++ {
			raw, clean := line(i, []int{10, 1500, 3000, 700, 1}[i%5])
			if _, err := w.WriteString(raw + "\n"); err != nil {
				t.Fatal(err)
			}
			want = append(want, clean)
		}
		w.Close()
	}
	_, out, outDone := pipeReader(t, b, Stdout)
	write(out, 0, 12)
	<-outDone
	_, errW, errDone := pipeReader(t, b, Stderr)
	write(errW, 12, 15)
	<-errDone
	if !slices.Equal(seen, want) {
		t.Errorf("OnLine saw %d lines, different from the %d written", len(seen), len(want))
	}
	got := b.Tail().Lines()
	if len(got) != 5 {
		t.Fatalf("tail holds %d lines, want 5", len(got))
	}
	for i, g := range got {
		w := want[len(want)-5+i]
		if len(w) > tailLineCap {
			w = w[:tailLineCap]
		}
		if stream := []string{Stdout, Stdout, Stderr, Stderr, Stderr}[i]; g.Stream != stream || g.Text != w {
			t.Errorf("tail line %d: %s %.20q (%d bytes), want %s %.20q (%d bytes)", i, g.Stream, g.Text, len(g.Text), stream, w, len(w))
		}
	}
}

// Both streams trade cleaned lines' buffers with the one tail at the same
// time: no buffer is ever in two places (the race detector watches), and
// every line is handed on as it was written.
func TestTailTradesBuffersConcurrently(t *testing.T) {
	t.Parallel()
	const n = 3000
	var mu sync.Mutex
	bad := map[string]int{}
	next := map[string]int{}
	b := NewBridge(Options{TailLines: 4, OnLine: func(l *Line) {
		mu.Lock()
		defer mu.Unlock()
		i := next[l.Stream]
		next[l.Stream]++
		if want := colourLine(l.Stream, i).clean; string(l.Text) != want {
			bad[l.Stream]++
		}
	}})
	var wg sync.WaitGroup
	for _, stream := range []string{Stdout, Stderr} {
		_, w, done := pipeReader(t, b, stream)
		wg.Go(func() {
			bw := bufio.NewWriter(w)
			for i := range n {
				bw.WriteString(colourLine(stream, i).raw + "\n")
			}
			bw.Flush()
			w.Close()
			<-done
		})
	}
	wg.Wait()
	if next[Stdout] != n || next[Stderr] != n || len(bad) > 0 {
		t.Errorf("lines handed on %v of %d each, changed %v", next, n, bad)
	}
	for _, l := range b.Tail().Lines() {
		if !strings.HasPrefix(l.Text, l.Stream) {
			t.Errorf("tail line %s %.30q", l.Stream, l.Text)
		}
	}
}

type rawClean struct{ raw, clean string }

// colourLine is line i of a stream: colour codes around its first word,
// of a length that varies up to 2,500 bytes.
func colourLine(stream string, i int) rawClean {
	text := fmt.Sprintf("%d %s", i, strings.Repeat(string(rune('a'+i%26)), (i*397)%2500))
	return rawClean{"\x1b[1m" + stream + "\x1b[0m " + text, stream + " " + text}
}

// A reader reuses its Line from line to line and sets each field rather
// than clearing the whole: whatever the previous line left in any field,
// the next line is handed on as a fresh Line would be.
func TestEmitSetsEveryField(t *testing.T) {
	t.Parallel()
	now := time.Date(2026, 12, 6, 21, 50, 0, 0, time.UTC)
	for _, line := range []string{
		"plain text",
		`{"level":"warn","msg":"m","k":1}`,
		"[12-06|21:46:25.946] \x1b[0;33mWARN\x1b[0;0m <C Chain> vm/vm.go:252 m {\"k\": 1}",
		"WARN [12-06|21:46:27.100] m   peer=5a1c0e",
		"panic: boom",
	} {
		emit := func(dirty bool) Line {
			var got Line
			b := NewBridge(Options{Location: time.UTC, OnLine: func(l *Line) { got = l.Clone() }})
			r := b.Reader(Stdout, nil)
			r.setNow(now)
			r.emit([]byte("warm up"), false, nil)
			if dirty {
				v := reflect.ValueOf(&r.line).Elem()
				for i := range v.NumField() {
					f := reflect.NewAt(v.Field(i).Type(), unsafe.Pointer(v.Field(i).UnsafeAddr())).Elem()
					switch f.Kind() {
					case reflect.Int, reflect.Int8, reflect.Int64:
						f.SetInt(3)
					case reflect.Uint, reflect.Uint8, reflect.Uint64:
						f.SetUint(3)
					case reflect.String:
						f.SetString("junk")
					case reflect.Slice:
						f.SetBytes([]byte("junk"))
					case reflect.Bool:
						f.SetBool(true)
					case reflect.Struct:
						f.Set(reflect.ValueOf(time.Unix(1, 0)))
					default:
						t.Fatalf("Line.%s: a %s this test cannot fill", v.Type().Field(i).Name, f.Kind())
					}
				}
			}
			got = Line{}
			r.emit([]byte(line), false, nil)
			r.finishLines()
			return got
		}
		if fresh, reused := emit(false), emit(true); !reflect.DeepEqual(fresh, reused) {
			t.Errorf("%q after a line that left every field set:\n%+v\nwant\n%+v", line, reused, fresh)
		}
	}
}

func texts(lines []Line) []string {
	var out []string
	for _, l := range lines {
		out = append(out, string(l.Text))
	}
	return out
}

// FuzzBridge feeds arbitrary bytes (invalid UTF-8, escapes, huge lines,
// CRLF, log lines of every format, panics) through a reader over a real
// pipe, in writes of a fuzzed size, with a fuzzed MaxLineBytes and format.
// The reader must not panic; in the raw format it must not lose or invent
// a byte (the chunks it parsed, concatenated, are the input without its
// line ends) and must hand on one non-partial line per input line; in every
// format each chunk is within MaxLineBytes, every line's text and message
// are valid UTF-8 without ESC, and every log event is valid JSON, one per
// line handed on.
func FuzzBridge(f *testing.F) {
	for _, seed := range []struct {
		data    string
		maxLine uint16
		write   uint16
		format  uint8
	}{
		{"hello\nworld\n", 64, 0, 0},
		{"crlf\r\nline\r\n\r\n\r", 16, 1, 1},
		{"bad \xff\xfe utf8\n\xc3\n\xe2\x82\n", 4, 2, 0},
		{strings.Repeat("L", 100<<10) + "\n" + strings.Repeat("x", 5000), 1024, 4096, 1},
		{`{"level":"info","message":"ok"}` + "\n" + `{"level":"\u0065rror","msg":"\u001b[1m"}` + "\n", 1024, 0, 0},
		{"panic: boom\n\ngoroutine 1 [running]:\nmain.main()\n\t/x.go:1 +0x1\nafter\n", 1024, 5, 0},
		{"[12-06|21:46:25.946] \x1b[0;33mERROR\x1b[0;0m <X Chain> a.go:1 m {\"a\": 1}\n", 40, 3, 0},
		{"WARN [12-06|21:46:27.100] m     k=v e=\"x y\"\n", 1024, 0, 0},
		{"\x00\x01\x02\x1b[2J\x7f\x80\xc0\xff\n", 2, 1, 0},
		{"[WARN]  x: two:\n  a=\n  | 1\n  | \n  \n  b=\n  | \x1b[1m3\n   c=\"x y\"\n[INFO]  m: k=v\n  v=\n  | x\n", 1024, 0, 0},
	} {
		f.Add([]byte(seed.data), seed.maxLine, seed.write, seed.format)
	}
	f.Fuzz(func(t *testing.T, data []byte, maxLine, write uint16, format uint8) {
		limit := 1 + int(maxLine)%(4<<10)
		if len(data) > 16<<10 {
			limit = max(limit, 2<<10)
		}
		raw := format%2 == 1
		o := Options{MaxLineBytes: limit}
		if raw {
			o.Format = Raw
		}
		var (
			lines  []Line
			chunks [][]byte
			log    bytes.Buffer
		)
		o.Log = zerolog.New(&log)
		o.OnLine = func(l *Line) { lines = append(lines, l.Clone()) }
		b := NewBridge(o)
		b.rawHook = func(c []byte) { chunks = append(chunks, bytes.Clone(c)) }
		_, w, done := pipeReader(t, b, Stderr)
		chunk := 1 + int(write)
		for rest := data; len(rest) > 0; {
			n := min(chunk, len(rest))
			if _, err := w.Write(rest[:n]); err != nil {
				t.Fatal(err)
			}
			rest = rest[n:]
		}
		w.Close()
		<-done
		for i, c := range chunks {
			if len(c) > limit {
				t.Errorf("chunk %d is %d bytes, over %d", i, len(c), limit)
			}
		}
		if raw {
			var want []byte
			for line := range bytes.SplitSeq(data, []byte("\n")) {
				want = append(want, bytes.TrimSuffix(line, []byte("\r"))...)
			}
			if got := bytes.Join(chunks, nil); !bytes.Equal(got, want) {
				t.Fatalf("reader parsed %q, want %q", got, want)
			}
			complete := 0
			for _, l := range lines {
				if !l.Partial {
					complete++
				}
			}
			want2 := bytes.Count(data, []byte("\n"))
			if len(data) > 0 && data[len(data)-1] != '\n' {
				want2++
			}
			if complete != want2 || len(lines) != len(chunks) {
				t.Errorf("%d complete lines of %d, want %d of %d", complete, len(lines), want2, len(chunks))
			}
		}
		for i, l := range lines {
			for _, v := range [][]byte{l.Text, l.Message, l.Dump} {
				if !utf8.Valid(v) || bytes.IndexByte(v, 0x1b) >= 0 {
					t.Errorf("line %d: %q has ESC or invalid UTF-8", i, v)
				}
			}
		}
		sc := bufio.NewScanner(bytes.NewReader(log.Bytes()))
		sc.Buffer(nil, 16<<20)
		events := 0
		for sc.Scan() {
			events++
			if !json.Valid(sc.Bytes()) {
				t.Errorf("log event is not JSON: %q", sc.Bytes())
			}
		}
		if events != len(lines) {
			t.Errorf("%d log events for %d lines", events, len(lines))
		}
	})
}

// TestReaderLongLineMemory pushes a 10 MB line through a reader and checks
// that it allocated a small fraction of that: lines are chunked as they
// stream by, never accumulated. Not parallel: it reads the process-wide
// allocation counter.
func TestReaderLongLineMemory(t *testing.T) {
	const size = 10 << 20
	block := bytes.Repeat([]byte("x"), 1<<20)
	var lines, total int
	// Logging off: zerolog does not pool event buffers above 64 KiB, so
	// each full chunk would cost one short-lived buffer of the logger's.
	b := NewBridge(Options{Log: zerolog.Nop(), OnLine: func(l *Line) { lines++; total += len(l.Text) }})
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	_, w, done := pipeReader(t, b, Stdout)
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
	<-done
	runtime.ReadMemStats(&after)
	if err := <-writeErr; err != nil {
		t.Fatal(err)
	}
	if total != size || lines != (size+DefaultMaxLineBytes-1)/DefaultMaxLineBytes {
		t.Errorf("got %d bytes in %d chunks", total, lines)
	}
	if alloc := after.TotalAlloc - before.TotalAlloc; alloc > 1<<20 {
		t.Errorf("reading a %d-byte line allocated %d bytes", size, alloc)
	}
}

// A reader that has read no line is small: a node keeps hundreds of quiet
// plugins, two readers each, and what parsing needs (the line, the
// parser, a panic's dump) comes with the first line. Not parallel: it
// reads the process-wide allocation counter.
func TestQuietReaderIsSmall(t *testing.T) {
	const n = 1000
	b := NewBridge(Options{})
	readers := make([]*Reader, n)
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	for i := range readers {
		readers[i] = b.Reader(Stdout, nil)
	}
	runtime.ReadMemStats(&after)
	if per := (after.TotalAlloc - before.TotalAlloc) / n; per > 384 {
		t.Errorf("a reader takes %d bytes before its first line", per)
	}
	runtime.KeepAlive(readers)
}
