package logline

import (
	"sync"
	"unicode/utf8"
)

// tailLineCap is how many bytes of each line the tail keeps.
const tailLineCap = 1 << 10

// tailOwnCap bounds the buffers the tail keeps instead of a copy
// (addOwned): the tail's memory stays within tailOwnCap per line kept.
const tailOwnCap = 2 << 10

// TailLine is a line the tail kept.
type TailLine struct {
	Stream string
	Text   string
}

// Tail keeps the last lines of both streams of a process in the order they
// were read, each cut to 1 KiB, and the first line of the last panic,
// which a long goroutine dump would otherwise push out. It is safe for
// concurrent use.
type Tail struct {
	mu        sync.Mutex
	size      int         // lines kept at most
	lines     []tailEntry // allocated at the first line: a quiet plugin has none
	next, n   int
	panicLine tailEntry
	panicSeq  uint64 // seq of panicLine; 0: none
	seq       uint64 // lines added so far
}

type tailEntry struct {
	stream string
	text   []byte
}

func newTail(n int) *Tail { return &Tail{size: n} }

func (t *Tail) add(stream string, b []byte, startsPanic bool) {
	if len(b) > tailLineCap {
		b = b[:chunkCut(b, tailLineCap)]
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	if e := t.nextLocked(stream, b, startsPanic); e != nil {
		e.stream, e.text = stream, append(e.text[:0], b...)
	}
}

// addOwned is add for a b whose buffer the tail may keep, with b's start
// at its start and a capacity of at most tailOwnCap: the tail keeps b
// itself (cut to 1 KiB) rather than a copy, and returns the buffer of the
// line that this one pushes out, emptied, or nil, for the caller to use
// in place of b's (which it must no longer touch).
func (t *Tail) addOwned(stream string, b []byte, startsPanic bool) []byte {
	if len(b) > tailLineCap {
		b = b[:chunkCut(b, tailLineCap)]
	}
	t.mu.Lock()
	e := t.nextLocked(stream, b, startsPanic)
	if e == nil {
		t.mu.Unlock()
		return b[:0]
	}
	old := e.text
	e.stream, e.text = stream, b
	t.mu.Unlock()
	return old[:0]
}

// nextLocked counts a line, keeps it as the last panic's first line if it
// starts one, and returns the ring entry it is to fill (the oldest, once
// the ring is full), or nil if the tail keeps no lines. t.mu is held.
func (t *Tail) nextLocked(stream string, b []byte, startsPanic bool) *tailEntry {
	t.seq++
	if startsPanic {
		t.panicLine = tailEntry{stream, append(t.panicLine.text[:0], b...)}
		t.panicSeq = t.seq
	}
	if t.size == 0 {
		return nil
	}
	if t.lines == nil {
		t.lines = make([]tailEntry, t.size)
	}
	e := &t.lines[t.next]
	t.next = (t.next + 1) % len(t.lines)
	if t.n < len(t.lines) {
		t.n++
	}
	return e
}

// Lines returns the kept lines, oldest first. When the last panic's first
// line has scrolled out of the window it comes first.
func (t *Tail) Lines() []TailLine {
	t.mu.Lock()
	defer t.mu.Unlock()
	out := make([]TailLine, 0, t.n+1)
	if t.panicSeq != 0 && t.seq-t.panicSeq >= uint64(t.n) {
		out = append(out, TailLine{t.panicLine.stream, string(t.panicLine.text)})
	}
	first := (t.next - t.n + len(t.lines)) % max(len(t.lines), 1)
	for i := range t.n {
		e := &t.lines[(first+i)%len(t.lines)]
		out = append(out, TailLine{e.stream, string(e.text)})
	}
	return out
}

// Panic returns the first line of the last panic or fatal error, if any.
func (t *Tail) Panic() (string, bool) {
	t.mu.Lock()
	defer t.mu.Unlock()
	return string(t.panicLine.text), t.panicSeq != 0
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
