package logline

import (
	"bytes"
	"time"
)

// dump gathers the goroutine dump that follows a "panic: " or "fatal
// error: " line, within a size and a time bound.
type dump struct {
	active   bool
	first    []byte // the panic's line
	lines    []byte // the dump, lines joined with '\n'
	n        int    // lines in the dump
	cut      bool   // a dump line did not fit: the dump was cut there
	readAt   time.Time
	started  time.Time
	maxBytes int
	wait     time.Duration
}

func (d *dump) start(first []byte, now time.Time, maxBytes int, wait time.Duration) {
	d.active, d.cut, d.n = true, false, 0
	d.first = append(d.first[:0], first...)
	d.lines = d.lines[:0]
	d.readAt, d.started, d.maxBytes, d.wait = now, now, maxBytes, wait
}

// add appends a dump line, or reports false when it does not fit in the
// bounds: the dump is cut before it, and it and the lines after it are
// handed on as lines of their own.
func (d *dump) add(line []byte, now time.Time) bool {
	if len(d.lines)+len(line)+1 > d.maxBytes || now.Sub(d.started) > d.wait {
		d.cut = true
		return false
	}
	if d.n > 0 {
		d.lines = append(d.lines, '\n')
	}
	d.lines = append(d.lines, line...)
	d.n++
	return true
}

// deadline is when to stop waiting for the next dump line.
func (d *dump) deadline(now time.Time) time.Time {
	end := d.started.Add(d.wait)
	if idle := now.Add(dumpIdle); idle.Before(end) {
		return idle
	}
	return end
}

// release drops buffers a large dump grew, so a runtime that panicked once
// does not hold them for good.
func (d *dump) release() {
	if cap(d.lines) > 64<<10 {
		d.lines = nil
	}
}

// isDumpLine reports whether a line can belong to the goroutine dump the Go
// runtime prints after a panic or fatal error: blank lines, goroutine
// headers, frames (a function call line, then a tab-indented file:line),
// "created by", signal and register lines, nested panics.
func isDumpLine(b []byte) bool {
	if len(b) == 0 || b[0] == '\t' {
		return true
	}
	for _, p := range dumpPrefixes {
		if bytes.HasPrefix(b, p) {
			return true
		}
	}
	// A frame's function: "main.main()", "main.(*T).m(0xc0, ...)",
	// "panic({0x4a2c40?, 0x4e1a18?})".
	if b[len(b)-1] == ')' {
		open := bytes.IndexByte(b, '(')
		sp := bytes.IndexByte(b, ' ')
		if open > 0 && (sp < 0 || sp > open) {
			return true
		}
	}
	// A register of a fatal signal's dump: "rax    0x0".
	if sp := bytes.IndexByte(b, ' '); sp > 0 && sp <= 6 {
		rest := bytes.TrimLeft(b[sp:], " ")
		if bytes.HasPrefix(rest, []byte("0x")) {
			return true
		}
	}
	return false
}

var dumpPrefixes = [][]byte{
	[]byte("goroutine "), []byte("created by "), []byte("panic: "), []byte("fatal error: "),
	[]byte("[signal "), []byte("runtime stack:"), []byte("...additional frames elided..."),
	[]byte("[recovered]"), []byte("runtime: "), []byte("SIGQUIT: "), []byte("SIGABRT: "),
	[]byte("PC="), []byte("signal arrived during cgo execution"),
}
