package engine_test

import (
	"context"
	"errors"
	"reflect"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/rs/zerolog"
	"github.com/vmre/vmre/engine"
	"github.com/vmre/vmre/subprocess"
)

func TestOutputTailThenFollow(t *testing.T) {
	t.Parallel()
	l := &fakeLauncher{steps: []fakeStep{{lines: []string{"booting", "listening"}}}}
	e := newEngine(t, l, nil)
	rt, err := e.Launch(t.Context(), spec)
	if err != nil {
		t.Fatal(err)
	}
	out := l.output(0)
	out(&subprocess.Line{Stream: "stderr", Level: zerolog.WarnLevel, Text: []byte("running")})

	lines, f, err := e.TailOutput(rt.ID, 2, true, engine.OutputFilter{})
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if len(lines) != 2 || string(string(lines[0].Text)) != "listening" || string(lines[1].Text) != "running" || lines[1].Seq != 3 ||
		lines[1].Stream != "stderr" || lines[1].Level != zerolog.WarnLevel {
		t.Fatalf("tail = %+v", lines)
	}
	// Lines before the handshake carry no pid; later ones carry the pid.
	if lines[0].Pid != 0 || lines[1].Pid != rt.Pid {
		t.Fatalf("pids = %d, %d; want 0, %d", lines[0].Pid, lines[1].Pid, rt.Pid)
	}

	for i := range 5 {
		out(&subprocess.Line{Stream: "stdout", Text: []byte("live " + strconv.Itoa(i))})
	}
	var got []string
	for len(got) < 5 {
		ctx, cancel := context.WithTimeout(t.Context(), eventWait)
		batch, dropped, err := f.Next(ctx)
		cancel()
		if err != nil || dropped != 0 {
			t.Fatalf("Next = %v, dropped %d", err, dropped)
		}
		for _, l := range batch {
			got = append(got, string(l.Text))
		}
	}
	if strings.Join(got, ",") != "live 0,live 1,live 2,live 3,live 4" {
		t.Fatalf("followed %v", got)
	}
}

func TestOutputRingIsBounded(t *testing.T) {
	t.Parallel()
	l := &fakeLauncher{}
	e := newEngine(t, l, func(c *engine.Config) { c.OutputLines = 10; c.OutputBytes = 4096 })
	rt, err := e.Launch(t.Context(), spec)
	if err != nil {
		t.Fatal(err)
	}
	out := l.output(0)
	for i := range 100 {
		out(&subprocess.Line{Stream: "stdout", Text: []byte("line " + strconv.Itoa(i))})
	}
	lines, _, err := e.TailOutput(rt.ID, 0, false, engine.OutputFilter{})
	if err != nil {
		t.Fatal(err)
	}
	if len(lines) != 10 || string(string(lines[0].Text)) != "line 90" || lines[9].Seq != 100 {
		t.Fatalf("ring holds %d lines from %q", len(lines), string(lines[0].Text))
	}
	big := strings.Repeat("x", 3000)
	for range 5 {
		out(&subprocess.Line{Stream: "stdout", Text: []byte(big)})
	}
	lines, _, _ = e.TailOutput(rt.ID, 0, false, engine.OutputFilter{})
	total := 0
	for _, l := range lines {
		total += len(l.Text)
	}
	if total > 4096 {
		t.Fatalf("ring holds %d bytes of text, cap 4096", total)
	}
}

func TestSlowFollowerIsToldWhatItMissed(t *testing.T) {
	t.Parallel()
	l, e, _, f := launchFollowed(t, func(c *engine.Config) { c.WatchBuffer = 2 }) // follower buffer: 8 lines
	out := l.output(0)
	done := make(chan struct{})
	go func() {
		defer close(done)
		for i := range 10000 {
			out(&subprocess.Line{Stream: "stdout", Text: []byte(strconv.Itoa(i))})
		}
	}()
	select {
	case <-done:
	case <-time.After(eventWait):
		t.Fatal("output blocked by a follower that does not read")
	}
	// The drops count before the follower hears of them.
	if stats := e.OutputStats(); len(stats) != 1 || stats[0].Dropped != 10000-8 {
		t.Fatalf("before Next: OutputStats() = %+v, want %d dropped", stats, 10000-8)
	}
	lines, dropped, err := f.Next(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	if len(lines) != 8 || dropped != 10000-8 {
		t.Fatalf("got %d lines, %d dropped; want 8 and %d", len(lines), dropped, 10000-8)
	}
	stats := e.OutputStats()
	want := []engine.OutputStats{{ID: "r1", Counts: []engine.OutputCount{{Stream: "stdout", Level: zerolog.DebugLevel, Lines: 10000}}, Dropped: 10000 - 8}}
	if !reflect.DeepEqual(stats, want) {
		t.Fatalf("OutputStats() = %+v, want %+v", stats, want)
	}
}

// TestOutputStatsByStreamAndLevel: every line counts once, under its
// stream and level, whatever the ring keeps.
func TestOutputStatsByStreamAndLevel(t *testing.T) {
	t.Parallel()
	l, e, _, _ := launchFollowed(t, func(c *engine.Config) { c.OutputLines = 2 })
	out := l.output(0)
	for _, line := range []subprocess.Line{
		{Stream: "stdout", Level: zerolog.InfoLevel},
		{Stream: "stderr", Level: zerolog.TraceLevel},
		{Stream: "stderr", Level: zerolog.PanicLevel},
		{Stream: "stderr", Level: zerolog.NoLevel},
		{Stream: "stdout", Level: zerolog.InfoLevel},
		{Stream: "stdout", Level: zerolog.WarnLevel},
	} {
		out(&line)
	}
	want := []engine.OutputCount{
		{Stream: "stdout", Level: zerolog.InfoLevel, Lines: 2},
		{Stream: "stdout", Level: zerolog.WarnLevel, Lines: 1},
		{Stream: "stderr", Level: zerolog.TraceLevel, Lines: 1},
		{Stream: "stderr", Level: zerolog.PanicLevel, Lines: 1},
		{Stream: "stderr", Level: zerolog.NoLevel, Lines: 1},
	}
	if stats := e.OutputStats(); len(stats) != 1 || !reflect.DeepEqual(stats[0].Counts, want) || stats[0].Dropped != 0 {
		t.Fatalf("OutputStats() = %+v, want counts %+v", stats, want)
	}
}

// TestSlowFollowerBacklogIsBoundedByBytes: a follower that does not read
// holds at most the ring's byte bound of long lines, not its line bound's
// worth; the rest is counted as dropped, and a line larger than the bound
// alone still comes through.
func TestSlowFollowerBacklogIsBoundedByBytes(t *testing.T) {
	t.Parallel()
	const outputBytes = 64 << 10
	l, _, _, f := launchFollowed(t, func(c *engine.Config) { c.OutputBytes = outputBytes }) // follower buffer: 1024 lines
	out := l.output(0)
	long := strings.Repeat("x", 4<<10)
	const written = 100 // 400 KiB: well within 1024 lines, far past 64 KiB
	for range written {
		out(&subprocess.Line{Stream: "stdout", Text: []byte(long)})
	}
	lines, dropped, err := f.Next(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	held := 0
	for i, l := range lines {
		held += len(l.Text)
		if l.Seq != lines[0].Seq+uint64(i) {
			t.Fatalf("line %d has seq %d after %d", i, l.Seq, lines[i-1].Seq)
		}
	}
	if held > outputBytes || len(lines) == 0 {
		t.Fatalf("follower held %d lines, %d bytes of text; want some, at most %d bytes", len(lines), held, outputBytes)
	}
	if dropped != uint64(written-len(lines)) {
		t.Fatalf("dropped %d, want %d (written %d, got %d)", dropped, written-len(lines), written, len(lines))
	}

	huge := strings.Repeat("y", 2*outputBytes)
	out(&subprocess.Line{Stream: "stdout", Text: []byte(huge)})
	lines, dropped, err = f.Next(t.Context())
	if err != nil || len(lines) != 1 || string(string(lines[0].Text)) != huge || dropped != 0 {
		t.Fatalf("a line larger than the bound: got %d lines, %d dropped, %v; want it alone", len(lines), dropped, err)
	}

	// Once a line is dropped, so are the later ones until Next, even one
	// that would fit: a batch is one unbroken run, the drops right after it.
	big, mid := strings.Repeat("a", 60<<10), strings.Repeat("b", 8<<10)
	for _, text := range []string{big, mid, "c"} {
		out(&subprocess.Line{Stream: "stdout", Text: []byte(text)})
	}
	lines, dropped, err = f.Next(t.Context())
	if err != nil || len(lines) != 1 || string(string(lines[0].Text)) != big || dropped != 2 {
		t.Fatalf("after a drop: got %d lines, %d dropped, %v; want the first line, 2 dropped", len(lines), dropped, err)
	}
}

func TestFollowerEndsWhenRuntimeLeavesHistory(t *testing.T) {
	t.Parallel()
	_, e, rt, f := launchFollowed(t, func(c *engine.Config) { c.History = 1 })
	if _, err := e.Stop(t.Context(), rt.ID); err != nil {
		t.Fatal(err)
	}
	// The next ended runtime pushes r1 out of a history of one.
	r, err := e.Launch(t.Context(), spec)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := e.Stop(t.Context(), r.ID); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(t.Context(), eventWait)
	defer cancel()
	if _, _, err := f.Next(ctx); !errors.Is(err, engine.ErrClosed) {
		t.Fatalf("Next = %v, want ErrClosed", err)
	}
}

// launchFollowed launches one runtime on an engine configured by mod and
// follows its output from now on; the follower is closed at cleanup.
func launchFollowed(t *testing.T, mod func(*engine.Config)) (*fakeLauncher, *engine.Engine, engine.Runtime, *engine.Follower) {
	t.Helper()
	l := &fakeLauncher{}
	e := newEngine(t, l, mod)
	rt, err := e.Launch(t.Context(), spec)
	if err != nil {
		t.Fatal(err)
	}
	_, f, err := e.TailOutput(rt.ID, 0, true, engine.OutputFilter{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(f.Close)
	return l, e, rt, f
}
