package engine

import (
	"bytes"
	"fmt"
	"math/rand/v2"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/rs/zerolog"
	"github.com/vmre/vmre/internal/logline"
	"github.com/vmre/vmre/subprocess"
)

// TestOutputRingMatchesModel checks the circular buffer against the plain
// rule it implements — keep the newest lines such that there are at most
// maxLines of them and at most maxBytes bytes, but always the newest one —
// over random line sizes and bounds, including byte-bound drops while the
// buffer is still growing; lines come in a reused buffer, a
// follower gets each one, and the text arena stays bounded.
func TestOutputRingMatchesModel(t *testing.T) {
	t.Parallel()
	rng := rand.New(rand.NewPCG(1, 2))
	for round := range 200 {
		maxLines := 1 + rng.IntN(12)
		maxBytes := 64 + rng.IntN(600)
		ring := newOutputRing(maxLines, maxBytes, 4)
		f := &Follower{ring: ring, wake: make(chan struct{}, 1)}
		ring.followers[f] = struct{}{}
		var (
			model   []string
			scratch []byte // a launcher's reused buffer
		)
		for i := range 300 {
			text := strconv.Itoa(i) + strings.Repeat("x", rng.IntN(200))
			// The ring must copy: the buffer is overwritten right after.
			scratch = append(scratch[:0], text...)
			ring.add(&subprocess.Line{Text: scratch})
			for j := range scratch {
				scratch[j] = '#'
			}
			model = append(model, text)
			if got := f.pending[len(f.pending)-1]; string(got.Text) != text || got.Seq != uint64(i+1) {
				t.Fatalf("round %d line %d: follower got %d %.12q..., want %d %.12q...", round, i, got.Seq, got.Text, i+1, text)
			}
			f.pending, f.pendingBytes = f.pending[:0], 0
			if limit := max(2*(maxBytes+210), minRingText); cap(ring.text) > limit {
				t.Fatalf("round %d line %d: text arena of %d bytes, want at most %d", round, i, cap(ring.text), limit)
			}
			for len(model) > 1 && (len(model) > maxLines || modelBytes(model) > maxBytes) {
				model = model[1:]
			}
			n := rng.IntN(maxLines + 2) // 0 means all
			got := ring.tail(n, OutputFilter{})
			want := model
			if n > 0 && n < len(model) {
				want = model[len(model)-n:]
			}
			if len(got) != len(want) {
				t.Fatalf("round %d line %d: tail(%d) has %d lines, want %d", round, i, n, len(got), len(want))
			}
			for j := range got {
				if string(got[j].Text) != want[j] {
					t.Fatalf("round %d line %d: tail(%d)[%d] = %.12q..., want %.12q...", round, i, n, j, got[j].Text, want[j])
				}
			}
		}
		if ring.bytes != modelBytes(model) {
			t.Fatalf("round %d: ring counts %d bytes, model %d", round, ring.bytes, modelBytes(model))
		}
	}
}

func modelBytes(texts []string) int {
	n := 0
	for _, s := range texts {
		n += lineCost(len(s))
	}
	return n
}

// TestOutputRingAddAllocatesNothing: once the ring is full, keeping a
// line costs no allocation when no one follows. Not parallel: AllocsPerRun counts the whole process's.
func TestOutputRingAddAllocatesNothing(t *testing.T) {
	for _, size := range []int{0, 100, 5000} {
		ring := newOutputRing(1000, 1<<20, 256)
		text := []byte(strings.Repeat("x", size))
		line := &subprocess.Line{Stream: "stdout", Level: zerolog.InfoLevel, Text: text, Message: text}
		for range 3000 { // fill, and compact the arena a few times
			ring.add(line)
		}
		if n := testing.AllocsPerRun(1000, func() { ring.add(line) }); n != 0 {
			t.Errorf("%d-byte lines: add allocated %v times per line", size, n)
		}
		if got := ring.tail(1, OutputFilter{}); len(got) != 1 || string(got[0].Text) != string(text) || string(got[0].Message) != string(text) {
			t.Errorf("%d-byte lines: tail(1) = %+v", size, got)
		}
	}
}

// BenchmarkOutputRingAdd keeps lines in a full ring: plain text, and
// lines of the flood benchmark's formats (bench/plugins/avaplugin) as the
// parser hands them over, at 128 B and 1 KiB. The -follower cases also
// hand each line to a follower that keeps up.
func BenchmarkOutputRingAdd(b *testing.B) {
	formats := []struct{ name, prefix, suffix string }{
		{"plain", "", ""},
		{"zap-console", "[12-06|21:46:25.946] \x1b[0;33mWARN\x1b[0;0m <X Chain> vm/vm.go:252 ", ` {"height": 42}`},
		{"json", `{"level":"warn","ts":1796589990.5,"logger":"vm","msg":"`, `","height":42}`},
	}
	for _, size := range []int{128, 1024} {
		for _, format := range formats {
			text := format.prefix + "~flood~ 000000042 "
			text += strings.Repeat("x", size-1-len(text)-len(format.suffix)) + format.suffix
			var line subprocess.Line
			logline.NewParser(logline.Auto, time.UTC).Parse([]byte(text), &line)
			line.Stream = subprocess.StreamStdout
			for _, follow := range []bool{false, true} {
				name := fmt.Sprintf("%s-%dB", format.name, size)
				if follow {
					name += "-follower"
				}
				b.Run(name, func(b *testing.B) {
					ring := newOutputRing(DefaultOutputLines, DefaultOutputBytes, 4*DefaultWatchBuffer)
					var f *Follower
					if follow {
						f = &Follower{ring: ring, wake: make(chan struct{}, 1)}
						ring.followers[f] = struct{}{}
					}
					b.ReportAllocs()
					for b.Loop() {
						ring.add(&line)
						if f != nil && len(f.pending) == 64 {
							if _, _, err := f.Next(b.Context()); err != nil {
								b.Fatal(err)
							}
						}
					}
				})
			}
		}
	}
}

// TestStalledFollowersCostNothingPerLine: followers whose backlog is full
// and who do not read (a client that stopped reading) are not visited per
// line: with only such followers, keeping a line allocates nothing, as
// with none. Next still reports exactly the lines each one's filter
// selects among those it dropped. Not parallel: AllocsPerRun counts the
// whole process's.
func TestStalledFollowersCostNothingPerLine(t *testing.T) {
	ring := newOutputRing(1000, 1<<20, 8)
	filters := []OutputFilter{
		{},
		{Stream: subprocess.StreamStderr},
		{MinLevel: zerolog.WarnLevel},
		{Stream: subprocess.StreamStdout, MinLevel: zerolog.ErrorLevel},
	}
	var followers []*Follower
	for range 16 {
		for _, filter := range filters {
			f := &Follower{ring: ring, wake: make(chan struct{}, 1), filter: filter}
			ring.followers[f] = struct{}{}
			followers = append(followers, f)
		}
	}
	var lines []*subprocess.Line
	for _, stream := range []string{subprocess.StreamStdout, subprocess.StreamStderr} {
		for _, level := range []zerolog.Level{zerolog.TraceLevel, zerolog.DebugLevel, zerolog.InfoLevel, zerolog.WarnLevel, zerolog.ErrorLevel, zerolog.NoLevel} {
			lines = append(lines, &subprocess.Line{Stream: stream, Level: level, Text: []byte("some output")})
		}
	}
	added := 0
	add := func() {
		ring.add(lines[added%len(lines)])
		added++
	}
	for range 3000 { // fill every backlog, and the ring
		add()
	}
	if n := testing.AllocsPerRun(1000, add); n != 0 {
		t.Errorf("add allocated %v times per line with only stalled followers", n)
	}
	for i, f := range followers {
		got, dropped, err := f.Next(t.Context())
		if err != nil {
			t.Fatal(err)
		}
		want := 0
		for j := range added {
			l := lines[j%len(lines)]
			if (f.filter.Stream == "" || f.filter.Stream == l.Stream) && levelAtLeast(l.Level, f.filter.MinLevel) {
				want++
			}
		}
		if len(got) != 8 || uint64(len(got))+dropped != uint64(want) {
			t.Fatalf("follower %d (%+v): %d lines and %d dropped, want 8 and %d", i, f.filter, len(got), dropped, want-8)
		}
	}
	// Back among the followers visited per line: the next line reaches them.
	ring.add(lines[len(lines)-1]) // stderr, no level: every filter but the stdout one keeps it
	for i, f := range followers {
		if want := f.filter.Stream != subprocess.StreamStdout; (len(f.pending) == 1) != want {
			t.Fatalf("follower %d (%+v): %d lines pending after Next, want %v", i, f.filter, len(f.pending), want)
		}
	}
}

// TestOutputRingKeepsFieldsAsTheyCame: whatever of a line's byte fields
// are parts of its Text, the ring gives back (in a tail and to a follower)
// every field with the bytes and nil-ness it came with, keeps the fields
// that lie within Text as offsets into it (the arena holds Text and only
// the other fields' bytes), and counts each line's bytes as the line holds
// them.
func TestOutputRingKeepsFieldsAsTheyCame(t *testing.T) {
	t.Parallel()
	parsed := func(text string) func() *subprocess.Line {
		return func() *subprocess.Line {
			var l subprocess.Line
			logline.NewParser(logline.Auto, time.UTC).Parse([]byte(text), &l)
			return &l
		}
	}
	text := []byte("WARN [12-06|21:46:27.100] Snapshot extension failed   peer=5a1c0e")
	tests := []struct {
		name string
		line func() *subprocess.Line
		// shared is how many bytes of the fields other than Text the
		// arena need not hold.
		shared int
	}{
		{name: "message within text", line: func() *subprocess.Line {
			return &subprocess.Line{Text: text, Message: text[26:51]}
		}, shared: 25},
		{name: "message is text", line: func() *subprocess.Line {
			return &subprocess.Line{Text: text, Message: text}
		}, shared: len(text)},
		{name: "message at text's end", line: func() *subprocess.Line {
			return &subprocess.Line{Text: text, Message: text[len(text)-6:]}
		}, shared: 6},
		{name: "message not within text", line: func() *subprocess.Line {
			return &subprocess.Line{Text: text, Message: []byte("Snapshot extension failed")}
		}},
		{name: "message runs past text", line: func() *subprocess.Line {
			return &subprocess.Line{Text: text[:30], Message: text[26:51]}
		}},
		{name: "message before text", line: func() *subprocess.Line {
			return &subprocess.Line{Text: text[26:], Message: text[:26]}
		}},
		{name: "empty message", line: func() *subprocess.Line {
			return &subprocess.Line{Text: text, Message: text[5:5]}
		}},
		{name: "empty message of its own", line: func() *subprocess.Line {
			return &subprocess.Line{Text: text, Message: []byte{}}
		}},
		{name: "nil message", line: func() *subprocess.Line {
			return &subprocess.Line{Text: text}
		}},
		{name: "empty text and message", line: func() *subprocess.Line {
			return &subprocess.Line{Text: []byte{}, Message: []byte{}, Fields: []byte{}}
		}},
		{name: "nil everything", line: func() *subprocess.Line {
			return &subprocess.Line{}
		}},
		{name: "every field", line: func() *subprocess.Line {
			return &subprocess.Line{Text: text, Message: text[26:51], LevelText: text[:4], Logger: []byte("C-Chain"),
				Caller: text[52:], Fields: []byte(`{"peer":"5a1c0e"}`), Dump: []byte("goroutine 1 [running]:")}
		}, shared: 25 + 4 + len(text) - 52},
		{name: "fields overlapping each other", line: func() *subprocess.Line {
			return &subprocess.Line{Text: text, Message: text[10:40], Fields: text[20:60], Caller: text[10:40]}
		}, shared: 30 + 40 + 30},
		{name: "zap console", line: parsed("[12-06|21:46:25.946] \x1b[0;33mERROR\x1b[0;0m <X Chain> rpcchainvm/vm_server.go:252 failed to initialize vm {\"error\": \"unknown codec version\"}")},
		{name: "geth", line: parsed(string(text))},
		{name: "zap json", line: parsed(`{"level":"warn","ts":1733521585.946,"logger":"C","caller":"x/y.go:12","msg":"disk almost full","free_bytes":1048576}`)},
		{name: "logfmt", line: parsed(`time=2026-12-06T21:46:25.946Z level=WARN msg="disk almost full" free_bytes=1048576`)},
		{name: "klog", line: parsed(`E1206 21:46:25.946123 1234 file.go:12] something failed`)},
		{name: "plain", line: parsed(`just some text`)},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			in := tt.line()
			in.Stream, in.Level = subprocess.StreamStderr, zerolog.WarnLevel
			want := in.Clone()
			logical := 0
			for _, p := range parts(in) {
				logical += len(p)
			}
			ring := newOutputRing(10, 1<<20, 4)
			f := &Follower{ring: ring, wake: make(chan struct{}, 1)}
			ring.followers[f] = struct{}{}
			ring.add(in)
			// The ring must copy: the caller's buffers are reused at once.
			for _, p := range parts(in) {
				for i := range p {
					p[i] = '#'
				}
			}
			want.Seq = 1
			sameLine(t, "tail", ring.tail(0, OutputFilter{})[0], want)
			sameLine(t, "follower", f.pending[0], want)
			if ring.bytes != lineCost(logical) || f.pendingBytes != lineCost(logical) {
				t.Errorf("ring counts %d bytes and follower %d, want %d", ring.bytes, f.pendingBytes, lineCost(logical))
			}
			if tt.shared > 0 {
				if got, wantLen := len(ring.text), logical-tt.shared; got != wantLen {
					t.Errorf("arena holds %d bytes, want %d (Text and the fields not within it)", got, wantLen)
				}
			}
		})
	}
}

// sameLine fails unless got has want's fields (byte fields nil where
// want's are) and appending to one of got's byte fields cannot change
// another.
func sameLine(t *testing.T, what string, got, want subprocess.Line) {
	t.Helper()
	g, w := parts(&got), parts(&want)
	names := [ringParts]string{"Text", "Message", "Fields", "Logger", "Caller", "LevelText", "Dump"}
	for i := range g {
		if !bytes.Equal(g[i], w[i]) || (g[i] == nil) != (w[i] == nil) {
			t.Errorf("%s: %s = %q (nil %v), want %q (nil %v)", what, names[i], g[i], g[i] == nil, w[i], w[i] == nil)
		}
		if cap(g[i]) != len(g[i]) {
			t.Errorf("%s: %s has capacity %d past its %d bytes", what, names[i], cap(g[i]), len(g[i]))
		}
	}
	textBefore := slices.Clone(got.Text)
	for i := range g {
		_ = append(g[i], "appended"...)
	}
	if !bytes.Equal(got.Text, textBefore) {
		t.Errorf("%s: appending to a field changed Text to %q", what, got.Text)
	}
	type rest struct {
		seq              uint64
		pid              int
		stream           string
		time, pluginTime time.Time
		level            zerolog.Level
		format           subprocess.LogFormat
		partial, panic   bool
	}
	restOf := func(l *subprocess.Line) rest {
		return rest{l.Seq, l.Pid, l.Stream, l.Time, l.PluginTime, l.Level, l.Format, l.Partial, l.Panic}
	}
	if g, w := restOf(&got), restOf(&want); g != w {
		t.Errorf("%s: line %+v, want %+v", what, g, w)
	}
}

// TestOutputRingLineAtItsBound: a line whose cost is exactly the ring's
// byte bound is kept alone, and one larger than the bound is kept alone
// too; either way its fields, parts of its Text or not, come back whole.
func TestOutputRingLineAtItsBound(t *testing.T) {
	t.Parallel()
	const maxBytes = 1024
	mk := func(c byte, n int) *subprocess.Line {
		// Text and a Message within it, and Fields of their own: the line
		// costs lineCost(n).
		b := bytes.Repeat([]byte{c}, n/2)
		fields := bytes.Repeat([]byte{c + 1}, n-len(b)-len(b)/2)
		return &subprocess.Line{Stream: subprocess.StreamStdout, Text: b, Message: b[len(b)/2:], Fields: fields}
	}
	atBound := maxBytes - lineCost(0)
	for _, tt := range []struct {
		name  string
		sizes []int
		want  int // lines kept
	}{
		{name: "two at the bound", sizes: []int{atBound, atBound}, want: 1},
		{name: "one below, one at", sizes: []int{0, atBound}, want: 1},
		{name: "two that fit", sizes: []int{atBound/2 - lineCost(0), atBound / 2}, want: 2},
		{name: "one past the bound", sizes: []int{10, 3 * maxBytes}, want: 1},
	} {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			ring := newOutputRing(100, maxBytes, 4)
			var want []subprocess.Line
			for i, n := range tt.sizes {
				l := mk(byte('a'+2*i), n)
				want = append(want, l.Clone())
				ring.add(l)
			}
			got := ring.tail(0, OutputFilter{})
			if len(got) != tt.want {
				t.Fatalf("ring keeps %d lines, want %d", len(got), tt.want)
			}
			want = want[len(want)-tt.want:]
			cost := 0
			for i := range got {
				want[i].Seq = uint64(len(tt.sizes) - tt.want + i + 1)
				sameLine(t, "tail", got[i], want[i])
				cost += lineCost(len(want[i].Text) + len(want[i].Message) + len(want[i].Fields))
			}
			if ring.bytes != cost {
				t.Errorf("ring counts %d bytes, want %d", ring.bytes, cost)
			}
		})
	}
}
