package logline

import (
	"os"

	"golang.org/x/sys/unix"
)

// NewPipe returns the pipe of one of a plugin's output streams: the read
// end for [Bridge.Reader], non-blocking and outside the runtime's poller,
// and the write end for the plugin, blocking. Read the read end only
// through a Reader: its Read method would return EAGAIN when the pipe is
// empty.
//
// Outside the poller, because the runtime registers a file for every
// event, edge-triggered, and Linux wakes every epoll waiter of a pipe
// that was ever polled at every write into it, empty or not: a plugin
// flooding its pipe woke the runtime's waiting thread at nearly every one
// of its writes while the reader was busy reading them. Here a reader
// waits through the descriptor waiter (internal/fdwait), whose watch
// fires once and stays off while the reader reads, or with poll(2)
// while a flood pauses (waitFlood); a blocking read loop (Run, or a
// reader whose waiter failed) puts a duplicate of the descriptor in the
// poller first (usePoller). The write end stays blocking and outside the
// poller too: os.Pipe would register it only for exec to make it
// blocking again.
func NewPipe() (r, w *os.File, err error) {
	var p [2]int
	if err := unix.Pipe2(p[:], unix.O_CLOEXEC); err != nil {
		return nil, nil, os.NewSyscallError("pipe2", err)
	}
	// os.NewFile puts a non-blocking descriptor in the poller: the read
	// end is made non-blocking after it. Its only status flag is its
	// access mode, which F_SETFL leaves alone.
	r = os.NewFile(uintptr(p[0]), "|0")
	if _, err := unix.FcntlInt(uintptr(p[0]), unix.F_SETFL, unix.O_NONBLOCK); err != nil {
		r.Close()
		unix.Close(p[1])
		return nil, nil, os.NewSyscallError("fcntl", err)
	}
	return r, os.NewFile(uintptr(p[1]), "|1"), nil
}

// pipeFloodSize is the capacity a pipe grows to while its plugin writes
// faster than the reader reads: Linux's default pipe-max-size, the most an
// unprivileged process may set. The writer can then run up to 1 MiB
// ahead, so the reader drains it with large reads and rarely finds it
// empty: each time it does, its goroutine ends and a wake of the waiter,
// a new goroutine and the scheduler's hand-offs start the next read, which
// cost more than parsing the 64 lines a default-sized pipe holds.
const pipeFloodSize = 1 << 20

// pipeSize grows a pipe while it floods and shrinks it back once the
// reader has emptied it. The kernel counts a pipe's capacity, used or
// not, against its user's pipe-user-pages limits, past which that user's
// new pipes get two pages; so only a pipe whose plugin floods it right
// now is grown.
type pipeSize struct {
	// base is the capacity before growing; 0: not a pipe, or growing
	// failed; -1: not read yet.
	base  int
	grown bool // the capacity is pipeFloodSize
}

// minPipeSize is the least capacity a pipe has: one page, and pages are
// at least 4 KiB.
const minPipeSize = 4 << 10

// init readies p for a new pipe, fd in its methods. Its capacity is read
// at the first read that could have taken all of it: a quiet plugin's
// never does, and its two pipes then cost no system call for it.
func (p *pipeSize) init() {
	p.base = -1
}

// afterRead grows the pipe when a read of room bytes took n: all the room
// it had, or the pipe's whole capacity. A pipe the kernel refuses to grow
// (a lower pipe-max-size, the user's limits) is not tried again. It
// reports whether it grew the pipe.
func (p *pipeSize) afterRead(fd, n, room int) bool {
	if p.grown || p.base == 0 || n < min(room, minPipeSize) {
		return false
	}
	if p.base < 0 {
		p.base = 0
		if c, err := unix.FcntlInt(uintptr(fd), unix.F_GETPIPE_SZ, 0); err == nil && c < pipeFloodSize {
			p.base = c
		}
		if p.base == 0 {
			return false
		}
	}
	if n < min(room, p.base) {
		return false
	}
	if _, err := unix.FcntlInt(uintptr(fd), unix.F_SETPIPE_SZ, pipeFloodSize); err != nil {
		p.base = 0
		return false
	}
	p.grown = true
	return true
}

// shrink sets a grown pipe back to its capacity before growing. Data
// written since it was last read stays: the kernel refuses the change
// (EBUSY) when it would not fit, and the pipe stays grown. It reports
// whether it shrank the pipe.
func (p *pipeSize) shrink(fd int) bool {
	if !p.grown {
		return false
	}
	if _, err := unix.FcntlInt(uintptr(fd), unix.F_SETPIPE_SZ, p.base); err != nil {
		return false
	}
	p.grown = false
	return true
}
