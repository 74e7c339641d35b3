// Package logline turns a plugin's output streams into parsed lines: one
// [Reader] per stream splits the pipe into lines, recognises each line's log
// format, groups Go panic dumps into one line, and hands every line to a
// callback and a logger. Each format has its own small parser (json.go,
// zapconsole.go, geth.go, logfmt.go, klog.go); [Parser] picks one per line.
package logline

import (
	"bytes"
	"time"
	"unsafe"

	"github.com/rs/zerolog"
)

// Names of the two output streams, as in [Line.Stream] and the "stream" log
// field.
const (
	Stdout = "stdout"
	Stderr = "stderr"
)

// Line is one line of a plugin's output, parsed: one log record of the
// plugin, a Go panic with its goroutine dump, or one chunk of a line longer
// than the reader's cap.
//
// The byte slices of a Line handed to a callback are borrowed: they point
// into the reader's buffers and are valid only until the callback returns.
// Use [Line.Clone] to keep one.
type Line struct {
	// Seq numbers the lines of one runtime, from 1; zero until the engine's
	// output ring keeps the line.
	Seq uint64
	// Pid is the process that wrote the line.
	Pid int
	// Stream is Stdout or Stderr.
	Stream string
	// Time is when the engine read the line from the pipe.
	Time time.Time
	// PluginTime is the time the plugin wrote in the line, completed with
	// the year and the engine's zone when the format lacks them; zero when
	// the line carries none.
	PluginTime time.Time
	// Level is the plugin's level mapped onto zerolog's; info when the line
	// says none or names one zerolog has no equivalent for.
	Level zerolog.Level
	// LevelText is the plugin's level word when it maps to no zerolog
	// level, else nil.
	LevelText []byte
	// Format is the format the line was recognised as.
	Format Format
	// Message is the message without the format's prefix, level, time,
	// colour codes or fields.
	Message []byte
	// Fields is a JSON object holding the plugin's own structured fields,
	// without the level, message, time, logger and caller that have fields
	// of their own here; nil when there are none.
	Fields []byte
	// Logger and Caller are the logger name and source position the format
	// carries, or nil.
	Logger, Caller []byte
	// Text is the whole line as the plugin wrote it, without its line end
	// and ANSI escape sequences, and with invalid UTF-8 replaced with
	// U+FFFD.
	Text []byte
	// Dump holds the goroutine dump that followed a panic, its lines
	// joined with "\n"; nil on other lines.
	Dump []byte
	// Partial is set on every chunk of an over-long line but the last.
	Partial bool
	// Panic is set on a line that starts a Go panic or fatal runtime error
	// ("panic: ...", "fatal error: ..."), and on all its chunks.
	Panic bool

	// printable is set when Text is all printable ASCII.
	printable bool
	// safeTo is the length of Text's start that needs no JSON escaping
	// (printable ASCII without '"' or '\\'), found while cleaning it.
	safeTo int
}

// Clone returns a copy of l whose slices are its own, safe to keep.
func (l *Line) Clone() Line {
	c := *l
	c.LevelText = clone(l.LevelText)
	c.Message = clone(l.Message)
	c.Fields = clone(l.Fields)
	c.Logger = clone(l.Logger)
	c.Caller = clone(l.Caller)
	c.Text = clone(l.Text)
	c.Dump = clone(l.Dump)
	return c
}

func clone(b []byte) []byte {
	if b == nil {
		return nil
	}
	return append(make([]byte, 0, len(b)), b...)
}

// safe reports whether s can go between JSON quotes as it is, as jsonSafe
// does. An s inside the start of Text that the cleaning found to need no
// escaping (a zap console or geth line's message, logger and caller lie
// before the fields' first quote) needs no look at all: one comparison of
// addresses, inlined.
func (l *Line) safe(s []byte) bool {
	return l.inSafeStart(s) || l.safeSlow(s)
}

// safe4 is safe for each of four strings, in one call when all of them
// lie in Text's safe start.
func (l *Line) safe4(a, b, c, d []byte) bool {
	if l.inSafeStart(a) && l.inSafeStart(b) && l.inSafeStart(c) && l.inSafeStart(d) {
		return true
	}
	return l.safe(a) && l.safe(b) && l.safe(c) && l.safe(d)
}

// inSafeStart reports whether s is empty or lies inside Text[:safeTo].
func (l *Line) inSafeStart(s []byte) bool {
	// s's offset in Text; below Text it wraps to above safeTo.
	off := uintptr(unsafe.Pointer(unsafe.SliceData(s))) - uintptr(unsafe.Pointer(unsafe.SliceData(l.Text)))
	return len(s) == 0 || off <= uintptr(l.safeTo) && uintptr(len(s)) <= uintptr(l.safeTo)-off
}

// safeSlow is safe for an s that does not lie in Text's safe start. A
// long s elsewhere inside a printable Text can only hold '"' or '\\' that
// need escaping, which bytes.IndexByte finds many bytes at a time, several
// times faster than jsonSafe's check of every byte against every class.
func (l *Line) safeSlow(s []byte) bool {
	if _, ok := endWithin(s, l.Text); ok && len(s) >= safeIndexMin && l.printable {
		return bytes.IndexByte(s, '"') < 0 && bytes.IndexByte(s, '\\') < 0
	}
	return jsonSafe(s)
}

// safeIndexMin is the length from which two IndexByte calls beat jsonSafe.
const safeIndexMin = 32

// endWithin reports whether s lies inside text's bytes, as
// crypto/internal/alias compares slices, and if so where in text it ends.
func endWithin(s, text []byte) (int, bool) {
	if len(s) == 0 || len(text) == 0 {
		return 0, false
	}
	p := uintptr(unsafe.Pointer(unsafe.SliceData(s)))
	t := uintptr(unsafe.Pointer(unsafe.SliceData(text)))
	if p < t || p+uintptr(len(s)) > t+uintptr(len(text)) {
		return 0, false
	}
	return int(p-t) + len(s), true
}
