package logline

import "golang.org/x/sys/unix"

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
	fd int
	// base is the capacity before growing; 0: not a pipe, or growing
	// failed; -1: not read yet.
	base  int
	grown bool // the capacity is pipeFloodSize
}

// minPipeSize is the least capacity a pipe has: one page, and pages are
// at least 4 KiB.
const minPipeSize = 4 << 10

// init notes fd. Its capacity is read at the first read that could have
// taken all of it: a quiet plugin's never does, and its two pipes then
// cost no system call for it.
func (p *pipeSize) init(fd int) {
	p.fd, p.base = fd, -1
}

// afterRead grows the pipe when a read of room bytes took n: all the room
// it had, or the pipe's whole capacity. A pipe the kernel refuses to grow
// (a lower pipe-max-size, the user's limits) is not tried again. It
// reports whether it grew the pipe.
func (p *pipeSize) afterRead(n, room int) bool {
	if p.grown || p.base == 0 || n < min(room, minPipeSize) {
		return false
	}
	if p.base < 0 {
		p.base = 0
		if c, err := unix.FcntlInt(uintptr(p.fd), unix.F_GETPIPE_SZ, 0); err == nil && c < pipeFloodSize {
			p.base = c
		}
		if p.base == 0 {
			return false
		}
	}
	if n < min(room, p.base) {
		return false
	}
	if _, err := unix.FcntlInt(uintptr(p.fd), unix.F_SETPIPE_SZ, pipeFloodSize); err != nil {
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
func (p *pipeSize) shrink() bool {
	if !p.grown {
		return false
	}
	if _, err := unix.FcntlInt(uintptr(p.fd), unix.F_SETPIPE_SZ, p.base); err != nil {
		return false
	}
	p.grown = false
	return true
}
