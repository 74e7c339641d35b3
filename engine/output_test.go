package engine

import (
	"math/rand/v2"
	"strconv"
	"strings"
	"testing"
)

// TestOutputRingMatchesModel checks the circular buffer against the plain
// rule it implements — keep the newest lines such that there are at most
// maxLines of them and at most maxBytes bytes, but always the newest one —
// over random line sizes and bounds, including byte-bound drops while the
// buffer is still growing.
func TestOutputRingMatchesModel(t *testing.T) {
	t.Parallel()
	rng := rand.New(rand.NewPCG(1, 2))
	for round := range 200 {
		maxLines := 1 + rng.IntN(12)
		maxBytes := 64 + rng.IntN(600)
		ring := newOutputRing(maxLines, maxBytes, 4)
		var model []string
		for i := range 300 {
			text := strconv.Itoa(i) + strings.Repeat("x", rng.IntN(200))
			ring.add(OutputLine{Text: text})
			model = append(model, text)
			for len(model) > 1 && (len(model) > maxLines || modelBytes(model) > maxBytes) {
				model = model[1:]
			}
			n := rng.IntN(maxLines + 2) // 0 means all
			got := ring.tail(n)
			want := model
			if n > 0 && n < len(model) {
				want = model[len(model)-n:]
			}
			if len(got) != len(want) {
				t.Fatalf("round %d line %d: tail(%d) has %d lines, want %d", round, i, n, len(got), len(want))
			}
			for j := range got {
				if got[j].Text != want[j] {
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
		n += lineBytes(&Line{Text: s})
	}
	return n
}

func BenchmarkOutputRingAdd(b *testing.B) {
	ring := newOutputRing(1000, 1<<20, 256)
	line := OutputLine{Stream: "stdout", Level: "info", Text: strings.Repeat("x", 100)}
	b.ReportAllocs()
	for b.Loop() {
		ring.add(line)
	}
}
