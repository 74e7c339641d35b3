package engine

import (
	"bytes"
	"context"
	"fmt"
	"math/bits"
	"slices"
	"strings"
	"sync"
	"time"
	"unsafe"

	"github.com/rs/zerolog"
	"github.com/vmre/vmre/subprocess"
)

// outputRing keeps a runtime's recent output lines, bounded by count and by
// bytes, and fans new lines out to followers. add never blocks.
//
// The ring keeps no string per line: a flooding plugin's lines would make
// the garbage collector a large share of the engine's CPU. Each line's
// bytes are copied into one byte arena (text), and strings are made only
// for the lines a tail or a follower asks for. A line's other byte fields
// are most often parts of its Text (a parser's message, logger, caller and
// fields point into the line); those are kept as offsets into the copied
// Text, so a line's bytes are copied once, not twice.
type outputRing struct {
	maxLines, maxBytes, followerBuffer int

	mu sync.Mutex
	// lines is a circular buffer: count lines starting at head, wrapping.
	// It grows up to maxLines and is then reused.
	lines []ringLine
	head  int
	count int
	// bytes is the kept lines' lineCost, each line's byte fields counted
	// as a [subprocess.Line] holds them: which lines are kept does not
	// depend on how much of a line the arena shares, and the arena never
	// holds more than that.
	bytes int
	// text holds the kept lines' text back to back, oldest first, from
	// the oldest line's offset to len(text); add appends, and compacts or
	// reallocates when the capacity runs out (see reserve).
	text []byte
	// textBase is where text[0] is in the stream of all the bytes the
	// ring has kept: a line's off is its place in that stream, so that
	// moving the kept text changes textBase and no line.
	textBase  int
	seq       uint64
	pid       int
	closed    bool
	followers map[*Follower]struct{}
	// parked holds the followers that are dropping lines (their backlog
	// is full and they have not called Next since) and whose filter
	// counts can answer: they are not visited per line, so a follower
	// that stopped reading costs a flooding runtime nothing. counts
	// tells them at Next how many lines they dropped.
	parked map[*Follower]struct{}
	counts lineCounts
	// dropped counts the lines followers dropped, except those a parked
	// follower has dropped since it was parked (see droppedLocked).
	dropped uint64
}

// lineCounts counts the lines added by stream (stdout, stderr, any
// other) and level (zerolog.TraceLevel to Disabled).
type lineCounts [3][9]uint64

// countCell is where a line of stream and level is counted.
func countCell(stream string, level zerolog.Level) (int, int) {
	s := 2
	switch stream {
	case subprocess.StreamStdout:
		s = 0
	case subprocess.StreamStderr:
		s = 1
	}
	return s, min(max(int(level)+1, 0), len(lineCounts{}[0])-1)
}

// ringLine is a kept line: a [subprocess.Line] whose bytes take span
// bytes of the arena from off (text[off-textBase:]): its Text first, then each other byte field
// that is not a part of Text. Field i is at[i] bytes from off and n[i]
// long (-1: nil).
type ringLine struct {
	seq        uint64
	time       time.Time
	pluginTime time.Time
	stream     string
	level      zerolog.Level
	format     subprocess.LogFormat
	off        int
	span       int32
	n          [ringParts]int32
	at         [ringParts]int32
	partial    bool
	panic      bool
	pid        int
}

// The byte fields of a line, in the order the arena holds them.
const (
	partText = iota
	partMessage
	partFields
	partLogger
	partCaller
	partLevelText
	partDump
	ringParts
)

func parts(l *subprocess.Line) [ringParts][]byte {
	return [ringParts][]byte{l.Text, l.Message, l.Fields, l.Logger, l.Caller, l.LevelText, l.Dump}
}

// size is the bytes of a kept line's fields, counted as a
// [subprocess.Line] holds them (the arena may hold fewer: see span).
func (l *ringLine) size() int {
	n := 0
	for _, m := range l.n {
		n += max(int(m), 0)
	}
	return n
}

// minRingText is the text arena's first size: a runtime that writes a few
// lines keeps a small arena.
const minRingText = 4 << 10

func newOutputRing(maxLines, maxBytes, followerBuffer int) *outputRing {
	return &outputRing{maxLines: maxLines, maxBytes: maxBytes, followerBuffer: followerBuffer, followers: make(map[*Follower]struct{}),
		parked: make(map[*Follower]struct{})}
}

// lineCost is what a line of n bytes counts against maxBytes.
func lineCost(n int) int { return n + 64 }

func (o *outputRing) setPid(pid int) {
	o.mu.Lock()
	o.pid = pid
	o.mu.Unlock()
}

// offsetIn returns where p starts in text, and whether p lies within
// text's bytes. An empty p lies anywhere: it needs no bytes.
func offsetIn(p, text []byte) (int, bool) {
	if len(p) == 0 {
		return 0, true
	}
	if len(text) == 0 {
		return 0, false
	}
	at := uintptr(unsafe.Pointer(unsafe.SliceData(p))) - uintptr(unsafe.Pointer(unsafe.SliceData(text)))
	// Below text, at wraps around to a huge value.
	if at >= uintptr(len(text)) || uintptr(len(p)) > uintptr(len(text))-at {
		return 0, false
	}
	return int(at), true
}

// add keeps a copy of in's bytes and hands the line to the followers.
func (o *outputRing) add(in *subprocess.Line) {
	ps := parts(in)
	var l ringLine
	n, span := 0, len(in.Text)
	var own uint8 // bit i: field i is copied after Text
	for i, p := range ps {
		n += len(p)
		if p == nil {
			l.n[i] = -1
			continue
		}
		l.n[i] = int32(len(p))
		if i == partText {
			continue
		}
		if at, ok := offsetIn(p, in.Text); ok {
			l.at[i] = int32(at)
		} else {
			l.at[i] = int32(span)
			span += len(p)
			own |= 1 << i
		}
	}
	l.span = int32(span)
	o.mu.Lock()
	defer o.mu.Unlock()
	o.seq++
	cs, cl := countCell(in.Stream, in.Level)
	o.counts[cs][cl]++
	// Make room: at most maxLines lines, and at most maxBytes bytes unless
	// the new line alone is larger.
	for o.count > 0 && (o.count >= o.maxLines || o.bytes+lineCost(n) > o.maxBytes) {
		o.dropOldestLocked()
	}
	off := o.reserve(span)
	l.pid = in.Pid
	if l.pid == 0 {
		l.pid = o.pid
	}
	l.seq, l.time, l.pluginTime, l.stream, l.level, l.format = o.seq, in.Time, in.PluginTime, in.Stream, in.Level, in.Format
	l.off, l.partial, l.panic = o.textBase+off, in.Partial, in.Panic
	copy(o.text[off:], in.Text)
	for ; own != 0; own &= own - 1 {
		i := bits.TrailingZeros8(own)
		copy(o.text[off+int(l.at[i]):], ps[i])
	}
	if o.count < len(o.lines) {
		o.lines[(o.head+o.count)%len(o.lines)] = l
	} else {
		// Full but below maxLines: grow. Unwrap first if byte-bound drops
		// moved head, so that appending keeps the lines in order.
		if o.head != 0 {
			o.lines = slices.Concat(o.lines[o.head:], o.lines[:o.head])
			o.head = 0
		}
		o.lines = append(o.lines, l)
	}
	o.count++
	o.bytes += lineCost(n)
	if len(o.followers) > 0 {
		var line subprocess.Line
		made := false
		for f := range o.followers {
			if !f.filter.keepsRing(&l) {
				continue
			}
			if !made {
				line, made = o.lineLocked(&l, slices.Clone(o.text[off:off+span])), true
			}
			f.pushLocked(line, lineCost(n))
			if f.dropped > 0 && f.filter.countable() {
				delete(o.followers, f)
				o.parked[f] = struct{}{}
				f.parked, f.parkedAt = true, o.counts
			}
		}
	}
}

// reserve makes room for n more bytes of text after the kept lines' and
// returns their index in text. When the arena's capacity runs out it moves the
// kept text to the front, in place if that leaves at least half of the
// arena free, else into a new arena twice the size needed, so each byte is
// moved about once on average; the arena stays within about twice the
// kept text (at most about 2*maxBytes).
func (o *outputRing) reserve(n int) int {
	first := len(o.text) // no kept line: nothing to keep
	if o.count > 0 {
		first = o.lines[o.head].off - o.textBase
	}
	if len(o.text)+n <= cap(o.text) {
		o.text = o.text[:len(o.text)+n]
		return len(o.text) - n
	}
	kept := len(o.text) - first
	need := kept + n
	arena := o.text[:0]
	if 2*need > cap(o.text) || cap(o.text) > 8*max(need, minRingText) {
		arena = make([]byte, 0, max(2*need, minRingText))
	}
	arena = append(arena, o.text[first:]...) // copy handles the overlap
	o.textBase += first
	o.text = arena[:need]
	return kept
}

func (o *outputRing) dropOldestLocked() {
	oldest := &o.lines[o.head]
	o.bytes -= lineCost(oldest.size())
	*oldest = ringLine{}
	o.head = (o.head + 1) % len(o.lines)
	o.count--
	if o.count == 0 {
		o.text = o.text[:0]
	}
}

// lineLocked returns the kept line l as a [subprocess.Line] whose byte
// fields are slices of b, the line's span of arena bytes (a copy the
// caller owns); the fields that were parts of Text are again parts of
// Text. Capacities are cut so that appending to one field cannot
// overwrite another.
func (o *outputRing) lineLocked(l *ringLine, b []byte) subprocess.Line {
	var ps [ringParts][]byte
	for i, n := range l.n {
		switch {
		case n > 0:
			at, end := int(l.at[i]), int(l.at[i])+int(n)
			ps[i] = b[at:end:end]
		case n == 0:
			ps[i] = []byte{} // empty, but not nil, as it came
		}
	}
	return subprocess.Line{
		Seq: l.seq, Pid: l.pid, Stream: l.stream, Time: l.time, PluginTime: l.pluginTime, Level: l.level, Format: l.format,
		Text: ps[partText], Message: ps[partMessage], Fields: ps[partFields], Logger: ps[partLogger], Caller: ps[partCaller],
		LevelText: ps[partLevelText], Dump: ps[partDump], Partial: l.partial, Panic: l.panic,
	}
}

// tail returns the last n lines f keeps (all of them if n <= 0), oldest
// first. Their bytes share one copy of the arena.
func (o *outputRing) tail(n int, f OutputFilter) []subprocess.Line {
	var idx []int // positions from head of the lines sent, newest first
	for i := o.count - 1; i >= 0 && (n <= 0 || len(idx) < n); i-- {
		l := &o.lines[(o.head+i)%len(o.lines)]
		if f.keepsRing(l) {
			idx = append(idx, i)
		}
	}
	out := make([]subprocess.Line, len(idx))
	if len(idx) == 0 {
		return out
	}
	from := o.lines[(o.head+idx[len(idx)-1])%len(o.lines)].off
	all := slices.Clone(o.text[from-o.textBase:])
	for j, i := range slices.Backward(idx) {
		l := &o.lines[(o.head+i)%len(o.lines)]
		out[len(idx)-1-j] = o.lineLocked(l, all[l.off-from:l.off-from+int(l.span)])
	}
	return out
}

// exitSummaryLines is how many of its last output lines a runtime's
// failure message quotes; exitSummaryBytes bounds each.
const (
	exitSummaryLines = 5
	exitSummaryBytes = 200
)

// summary returns "; output: stdout: ... | stderr: ..." with the last n
// lines' texts (cut to exitSummaryBytes), or "" when there are none.
func (o *outputRing) summary(n int) string {
	o.mu.Lock()
	lines := o.tail(n, OutputFilter{})
	o.mu.Unlock()
	var b strings.Builder
	for i := range lines {
		if i == 0 {
			b.WriteString("; output: ")
		} else {
			b.WriteString(" | ")
		}
		text := lines[i].Text
		if len(text) > exitSummaryBytes {
			text = append(bytes.ToValidUTF8(text[:exitSummaryBytes], nil), "..."...)
		}
		b.WriteString(lines[i].Stream)
		b.WriteString(": ")
		b.Write(text)
	}
	return b.String()
}

// OutputFilter selects output lines; the zero value selects all.
type OutputFilter struct {
	// MinLevel, if not zerolog.NoLevel or zero (debug), drops lines below it.
	MinLevel zerolog.Level
	// Stream, if not empty, keeps only that stream's lines.
	Stream string
}

// countable reports whether the lines f selects can be counted from
// [lineCounts]: a Stream of any other name cannot.
func (f OutputFilter) countable() bool {
	return f.Stream == "" || f.Stream == subprocess.StreamStdout || f.Stream == subprocess.StreamStderr
}

// countSince returns how many lines f selects were added between the
// counts from and to.
func (f OutputFilter) countSince(from, to *lineCounts) uint64 {
	var n uint64
	for s, name := range [...]string{subprocess.StreamStdout, subprocess.StreamStderr, ""} {
		if f.Stream != "" && f.Stream != name {
			continue
		}
		for l := range to[s] {
			if levelAtLeast(zerolog.Level(l-1), f.MinLevel) {
				n += to[s][l] - from[s][l]
			}
		}
	}
	return n
}

func (f OutputFilter) keepsRing(l *ringLine) bool {
	return (f.Stream == "" || f.Stream == l.stream) && levelAtLeast(l.level, f.MinLevel)
}

// levelAtLeast orders zerolog's levels trace < debug < ... < panic; a min
// of debug (the zero Level) or below selects all.
func levelAtLeast(l, min zerolog.Level) bool {
	if min <= zerolog.DebugLevel || min == zerolog.NoLevel || min == zerolog.Disabled {
		return true
	}
	if l == zerolog.TraceLevel {
		return false
	}
	return l >= min
}

// close ends every follower; the ring keeps its lines.
func (o *outputRing) close() {
	o.mu.Lock()
	defer o.mu.Unlock()
	o.closed = true
	for f := range o.parked {
		f.unparkLocked()
		f.closed = true
		f.wakeLocked()
	}
	for f := range o.followers {
		f.closed = true
		f.wakeLocked()
		delete(o.followers, f)
	}
}

// Follower receives a runtime's new output lines. Obtain one from
// [Engine.TailOutput]; call Close when done.
type Follower struct {
	ring         *outputRing
	filter       OutputFilter
	wake         chan struct{}
	pending      []subprocess.Line // guarded by ring.mu
	pendingBytes int               // lineCost of pending; guarded by ring.mu
	dropped      uint64            // guarded by ring.mu
	closed       bool              // guarded by ring.mu
	// parked: in ring.parked, not ring.followers; the lines it dropped
	// since its first drop are counted from parkedAt. Guarded by ring.mu.
	parked   bool
	parkedAt lineCounts
	// lastBatch is how many lines the last Next returned: the next
	// backlog starts with room for as many, instead of growing to it
	// again by doubling. Guarded by ring.mu.
	lastBatch int
}

// unparkLocked adds the lines f dropped while parked to its count and
// puts it back among the followers visited per line (unless it is
// closed).
func (f *Follower) unparkLocked() {
	if !f.parked {
		return
	}
	n := f.filter.countSince(&f.parkedAt, &f.ring.counts)
	f.dropped += n
	f.ring.dropped += n
	f.parked = false
	delete(f.ring.parked, f)
	if !f.closed && !f.ring.closed {
		f.ring.followers[f] = struct{}{}
	}
}

// pushLocked queues l, or drops it if the backlog is full: by lines, or by
// bytes past the ring's own byte bound (a line alone may exceed it, as in
// the ring). Without the byte bound an idle follower of long lines would
// hold many times what the ring keeps, and one Next batch could exceed
// what a client accepts in a message. Once a line has been dropped, so is
// every later one until Next: a batch stays one unbroken run, and the
// dropped lines are the ones right after it.
//
// cost is l's lineCost, its byte fields counted as l holds them.
func (f *Follower) pushLocked(l subprocess.Line, cost int) {
	if f.dropped > 0 || len(f.pending) >= f.ring.followerBuffer ||
		(len(f.pending) > 0 && f.pendingBytes+cost > f.ring.maxBytes) {
		f.dropped++
		f.ring.dropped++
	} else {
		if f.pending == nil {
			f.pending = make([]subprocess.Line, 0, min(max(f.lastBatch, 1), f.ring.followerBuffer))
		}
		f.pending = append(f.pending, l)
		f.pendingBytes += cost
	}
	f.wakeLocked()
}

func (f *Follower) wakeLocked() {
	select {
	case f.wake <- struct{}{}:
	default:
	}
}

// Next blocks until there are new lines and returns all of them, with the
// number of lines dropped since the last call because this follower fell more
// than its buffer behind: 4*[Config.WatchBuffer] lines, or
// [Config.OutputBytes] bytes (counted as the ring counts them), whichever is
// reached first. A single line larger than that still comes through. It
// returns [ErrClosed] once the runtime has left the engine (or the engine
// closed), and ctx's error when ctx ends.
func (f *Follower) Next(ctx context.Context) ([]subprocess.Line, uint64, error) {
	for {
		f.ring.mu.Lock()
		f.unparkLocked()
		if len(f.pending) > 0 || f.dropped > 0 {
			lines, dropped := f.pending, f.dropped
			f.pending, f.pendingBytes, f.dropped, f.lastBatch = nil, 0, 0, len(lines)
			f.ring.mu.Unlock()
			return lines, dropped, nil
		}
		if f.closed {
			f.ring.mu.Unlock()
			return nil, 0, ErrClosed
		}
		f.ring.mu.Unlock()
		select {
		case <-f.wake:
		case <-ctx.Done():
			return nil, 0, ctx.Err()
		}
	}
}

// Close stops the follower. Idempotent.
func (f *Follower) Close() {
	f.ring.mu.Lock()
	defer f.ring.mu.Unlock()
	f.closed = true
	delete(f.ring.followers, f)
	f.unparkLocked() // its drops while parked are counted in the ring
}

// TailOutput returns up to n of the runtime's most recent output lines
// that filter selects (all it keeps if n <= 0), oldest first. With follow set it also returns a
// [Follower] that receives every later line filter selects: nothing is lost or repeated
// between the tail and the follower. The follower ends when the runtime
// leaves the history or the engine closes.
func (e *Engine) TailOutput(id string, n int, follow bool, filter OutputFilter) ([]subprocess.Line, *Follower, error) {
	e.mu.Lock()
	r, ok := e.runtimes[id]
	e.mu.Unlock()
	if !ok {
		return nil, nil, fmt.Errorf("tail output of %q: %w", id, ErrUnknownRuntime)
	}
	o := r.out
	o.mu.Lock()
	defer o.mu.Unlock()
	lines := o.tail(n, filter)
	if !follow {
		return lines, nil, nil
	}
	f := &Follower{ring: o, wake: make(chan struct{}, 1), closed: o.closed, filter: filter}
	if !o.closed {
		o.followers[f] = struct{}{}
	}
	return lines, f, nil
}

// droppedLocked returns how many lines the ring's followers have dropped,
// the parked ones' drops since they were parked included.
func (o *outputRing) droppedLocked() uint64 {
	n := o.dropped
	for f := range o.parked {
		n += f.filter.countSince(&f.parkedAt, &o.counts)
	}
	return n
}

// OutputCount is how many lines a runtime wrote on one stream at one level.
type OutputCount struct {
	Stream string        // "stdout", "stderr", or "other" (a stream of another name)
	Level  zerolog.Level // zerolog.NoLevel: lines without a level
	Lines  uint64
}

// OutputStats is what a runtime's output amounted to since it was
// registered.
type OutputStats struct {
	ID string
	// Counts holds the non-zero line counts, stdout's first, then
	// stderr's, each stream's by increasing level (zerolog.TraceLevel
	// first, then DebugLevel ... PanicLevel, NoLevel, Disabled).
	Counts []OutputCount
	// Dropped counts the lines that output followers (see
	// [Engine.TailOutput]) did not receive because they fell behind.
	Dropped uint64
}

// OutputStats returns the output counts of every runtime, live and in the
// history, in creation order. The counts only grow while the runtime stays
// in the engine, restarts included.
func (e *Engine) OutputStats() []OutputStats {
	e.mu.Lock()
	out := make([]OutputStats, len(e.order))
	rings := make([]*outputRing, len(e.order))
	for i, id := range e.order {
		out[i].ID, rings[i] = id, e.runtimes[id].out
	}
	e.mu.Unlock()
	for i, o := range rings {
		o.mu.Lock()
		counts, dropped := o.counts, o.droppedLocked()
		o.mu.Unlock()
		out[i].Dropped = dropped
		for s, byLevel := range counts {
			stream := [...]string{subprocess.StreamStdout, subprocess.StreamStderr, "other"}[s]
			for l, n := range byLevel {
				if n == 0 {
					continue
				}
				// lineCounts' level index is the level plus one.
				out[i].Counts = append(out[i].Counts, OutputCount{Stream: stream, Level: zerolog.Level(l - 1), Lines: n})
			}
		}
	}
	return out
}
