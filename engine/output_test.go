package engine

import (
	"math/rand/v2"
	"strconv"
	"strings"
	"testing"

	"github.com/rs/zerolog"
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

func BenchmarkOutputRingAdd(b *testing.B) {
	for _, bc := range []struct {
		name string
		line *subprocess.Line
	}{
		{"100B", &subprocess.Line{Stream: "stdout", Text: []byte(strings.Repeat("x", 100))}},
		{"1KiB", &subprocess.Line{Stream: "stdout", Text: []byte(strings.Repeat("x", 1024))}},
	} {
		b.Run(bc.name, func(b *testing.B) {
			ring := newOutputRing(1000, 1<<20, 256)
			b.ReportAllocs()
			for b.Loop() {
				ring.add(bc.line)
			}
		})
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
