package logline

import (
	"time"

	"github.com/rs/zerolog"
)

// Defaults of [Options].
const (
	// DefaultMaxLineBytes is the longest line handed on whole; longer lines
	// are split into chunks of at most this size.
	DefaultMaxLineBytes = 64 << 10
	// DefaultTailLines is how many of the last lines of both streams the
	// tail keeps.
	DefaultTailLines = 20
	// DefaultDumpBytes bounds the goroutine dump kept with a panic.
	DefaultDumpBytes = 256 << 10
	// DefaultDumpWait bounds how long a panic waits for the rest of its
	// dump, from its first line; DumpIdle how long it waits for the next
	// line of it.
	DefaultDumpWait = 2 * time.Second
	dumpIdle        = 200 * time.Millisecond
	// pipeIdle is how long a pipe grown for a flooding plugin (Linux)
	// stays empty before it shrinks back and its reader stops waiting:
	// long enough that a flooding plugin the scheduler has paused for a
	// few time slices finds it still grown.
	pipeIdle = 200 * time.Millisecond
)

// Options configure the [Bridge] of one process. Zero fields take the
// documented defaults.
type Options struct {
	// Log receives one event per line. Give it the process's fields (vm,
	// pid); the bridge adds stream and the line's own.
	Log zerolog.Logger
	// Format is how lines are read; default Auto.
	Format Format
	// MaxLineBytes caps a line; default DefaultMaxLineBytes.
	MaxLineBytes int
	// TailLines is how many lines the tail keeps; default DefaultTailLines,
	// negative keeps none.
	TailLines int
	// DumpBytes and DumpWait bound a panic's dump; defaults
	// DefaultDumpBytes, DefaultDumpWait.
	DumpBytes int
	DumpWait  time.Duration
	// Pid is set on every Line.
	Pid int
	// OnLine, if set, is called for every line after it was logged, from the
	// goroutine reading its stream; see [Line] for what it may keep. It
	// must not block: the plugin stalls when its pipe fills. The line
	// reaches the Tail after OnLine returns.
	OnLine func(*Line)
	// Location completes plugin times without a zone; default time.Local.
	Location *time.Location
}

// Bridge holds what the two readers of one process share: the options, the
// buffer pool and the tail.
type Bridge struct {
	opts Options
	pool *bufPool
	tail *Tail
	// rawHook, set by tests only, sees the raw bytes of every line or
	// chunk before it is parsed.
	rawHook func([]byte)
	// pipeHook, set by tests only, sees the capacity a reader set its pipe
	// to, from the goroutine that set it.
	pipeHook func(size int)
	// batchHook, set by tests only, is called when a reader waits for
	// more of a plugin's lines before reading them (Linux).
	batchHook func()
	// pipeIdle is how long a grown pipe may stay empty (Linux); tests
	// change it.
	pipeIdle time.Duration
}

// NewBridge returns a Bridge with o's defaults applied.
func NewBridge(o Options) *Bridge {
	if o.MaxLineBytes <= 0 {
		o.MaxLineBytes = DefaultMaxLineBytes
	}
	if o.TailLines == 0 {
		o.TailLines = DefaultTailLines
	}
	if o.DumpBytes <= 0 {
		o.DumpBytes = DefaultDumpBytes
	}
	if o.DumpWait <= 0 {
		o.DumpWait = DefaultDumpWait
	}
	if o.Location == nil {
		o.Location = time.Local
	}
	return &Bridge{opts: o, pool: bufPoolFor(o.MaxLineBytes), tail: newTail(max(o.TailLines, 0)), pipeIdle: pipeIdle}
}

// Tail returns the bridge's tail: the last lines of both streams.
func (b *Bridge) Tail() *Tail { return b.tail }
