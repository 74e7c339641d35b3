package logline

import (
	"errors"
	"sync"
	"syscall"
	"time"

	"github.com/vmre/vmre/internal/fdwait"
	"golang.org/x/sys/unix"
)

// wakeState is what Start keeps of a reader whose reads the process's
// descriptor waiter starts: a quiet plugin's two readers then hold no
// goroutine (and no stack) for the plugin's life.
type wakeState struct {
	// mu is held while the reader reads or ends: a wake of the waiter, the
	// dump's timer, StopWaiting. One at a time, so lines stay in order.
	mu       sync.Mutex
	w        *fdwait.Waiter
	fd       int
	done     func()
	timer    *time.Timer // ends a dump's wait while the pipe is quiet
	shrink   *time.Timer // shrinks a grown pipe that stayed empty
	reads    uint64      // reads that returned data
	idleMark uint64      // reads when shrink was set
	finished bool        // the pipe is closed and done called, or a blocking loop owns the reader
}

// startWoken hands the pipe to the waiter; false if it cannot.
func (r *Reader) startWoken(done func()) bool {
	w := fdwait.Shared()
	if w == nil || r.rs.init(r.f) != nil {
		return false
	}
	fd := r.rs.fd
	k := &r.wake
	k.mu.Lock()
	defer k.mu.Unlock()
	k.w, k.fd, k.done = w, fd, done
	r.deadlineMu.Lock()
	r.woken = true
	r.deadlineMu.Unlock()
	if w.Watch(fd, r.onReadable) != nil {
		r.unwake()
		return false
	}
	return true
}

// onReadable is the waiter's wake of the pipe; ok false: the waiter
// failed, and the reader reads on this goroutine from now on.
func (r *Reader) onReadable(ok bool) {
	k := &r.wake
	k.mu.Lock()
	if k.finished {
		k.mu.Unlock()
		return
	}
	if ok {
		r.pauseForBatch()
		if r.readWoken() || k.w.Rearm(k.fd) == nil {
			k.mu.Unlock()
			return
		}
	}
	r.fallBack()
}

// onDumpTimer ends a panic's wait for more of its dump when the pipe has
// stayed quiet until the dump's deadline.
func (r *Reader) onDumpTimer() {
	k := &r.wake
	k.mu.Lock()
	defer k.mu.Unlock()
	if !k.finished {
		r.readWoken()
	}
}

// readWoken reads what the pipe holds, without waiting, and reports
// whether the reader has ended (end of file, or StopWaiting). A dump
// whose deadline has passed ends before what came after it is read, as
// the blocking read's deadline would have it.
func (r *Reader) readWoken() bool {
	if r.dumping() && !r.deadline.IsZero() && !time.Now().Before(r.deadline) {
		r.endDump()
	}
	ended := r.readAvailable()
	if ended || r.stopRequested() {
		if !ended {
			r.drainRest()
		}
		r.finishWoken()
		return true
	}
	k := &r.wake
	switch {
	case r.dumping() && !r.deadline.IsZero():
		d := time.Until(r.deadline)
		if k.timer == nil {
			k.timer = time.AfterFunc(d, r.onDumpTimer)
		} else {
			k.timer.Reset(d)
		}
	case k.timer != nil:
		k.timer.Stop()
	}
	return false
}

// readAvailable reads into lines until the pipe is empty; it reports
// whether the stream has ended (end of file or a read error). It returns
// early, with the stream not ended, once StopWaiting was called: the rest
// is drainRest's, within its bound.
func (r *Reader) readAvailable() bool {
	for !r.stopRequested() {
		if r.buf == nil {
			r.buf = r.b.pool.get()
		}
		if r.start > 0 && len(r.buf)-r.end < compactBelow {
			r.end = copy(r.buf, r.buf[r.start:r.end])
			r.start = 0
		}
		room := r.buf[r.end:]
		n, err := r.rs.readRaw(room)
		if n > 0 {
			r.wake.reads++
			if r.rs.pipe.afterRead(r.rs.fd, n, len(room)) && r.b.pipeHook != nil {
				r.b.pipeHook(pipeFloodSize)
			}
			r.end += n
			r.setNow(time.Now())
			r.process()
			continue
		}
		if !errors.Is(err, syscall.EAGAIN) {
			return true
		}
		if r.rs.pipe.grown && !r.dumping() && r.waitFlood() {
			continue
		}
		r.shrinkLater()
		if r.start == r.end {
			r.b.pool.put(r.buf)
			r.buf, r.start, r.end, r.scanned = nil, 0, 0, 0
		}
		return false
	}
	return false
}

// A plugin that writes its log line by line (zap, as rpcchainvm sets it
// up, makes a write(2) of every line) wakes a reader that has emptied the
// pipe at every line: the reader's wake, a read of one line and a read
// that finds the pipe empty cost the engine several times the line's
// parsing, and each of the plugin's writes wakes a sleeping reader.
// pauseForBatch has a reader that read data less than chattyGap ago wait
// batchWait before it reads again, so that it reads the lines written
// meanwhile at once. A quiet plugin's lines are read as soon as they come.
const (
	batchWait = 200 * time.Microsecond
	chattyGap = time.Millisecond
)

// pauseForBatch waits batchWait if the reader last read data less than
// chattyGap ago. k.mu is held.
func (r *Reader) pauseForBatch() {
	if r.now.IsZero() || time.Since(r.now) >= chattyGap {
		return
	}
	if r.b.batchHook != nil {
		r.b.batchHook()
	}
	time.Sleep(batchWait)
}

// floodPoll is the longest poll(2) of waitFlood, and so how long
// StopWaiting may wait for a reader waiting for a flood to see it.
const floodPoll = 10 * time.Millisecond

// waitFlood waits on this goroutine for more of a flooding plugin's
// output: a woken reader that ended at every empty pipe would cost, per
// pause of the plugin, a wake of the waiter, a new goroutine growing its
// stack, and the scheduler's and sysmon's work when the process goes idle
// and busy again. It waits with poll(2), in waits of at most floodPoll,
// not in the runtime's poller (NewPipe says why), and reports whether the
// pipe became readable (data, or its write end closed). It reports false
// after StopWaiting, and after the bridge's pipe idle time without data,
// having shrunk the pipe; the reader then goes back to the waiter. k.mu
// is held.
func (r *Reader) waitFlood() bool {
	r.pauseForBatch()
	end := time.Now().Add(r.b.pipeIdle)
	fds := []unix.PollFd{{Fd: int32(r.wake.fd), Events: unix.POLLIN}}
	for !r.stopRequested() {
		left := time.Until(end)
		if left <= 0 {
			break
		}
		ready, err := unix.Poll(fds, int(min(left, floodPoll).Milliseconds())+1)
		if err != nil && err != unix.EINTR {
			break // back to the waiter
		}
		if ready > 0 {
			return true
		}
	}
	if !r.stopRequested() && r.rs.pipe.shrink(r.rs.fd) && r.b.pipeHook != nil {
		r.b.pipeHook(r.rs.pipe.base)
	}
	return false
}

// shrinkLater shrinks a grown pipe once it has stayed empty (no read took
// data since) for the bridge's pipe idle time, where waitFlood did not
// wait: a dump is being gathered, or StopWaiting was called. k.mu is
// held.
func (r *Reader) shrinkLater() {
	k := &r.wake
	if !r.rs.pipe.grown {
		return
	}
	k.idleMark = k.reads
	if k.shrink == nil {
		k.shrink = time.AfterFunc(r.b.pipeIdle, r.onShrinkTimer)
	} else {
		k.shrink.Reset(r.b.pipeIdle)
	}
}

func (r *Reader) onShrinkTimer() {
	k := &r.wake
	k.mu.Lock()
	defer k.mu.Unlock()
	if !k.finished && k.reads == k.idleMark && r.rs.pipe.shrink(r.rs.fd) && r.b.pipeHook != nil {
		r.b.pipeHook(r.rs.pipe.base)
	}
}

// stopWoken is StopWaiting's work for a reader the waiter wakes: read
// what the pipe holds, within drainRest's bound, and end.
func (r *Reader) stopWoken() {
	k := &r.wake
	k.mu.Lock()
	defer k.mu.Unlock()
	if !k.finished {
		r.drainRest()
		r.finishWoken()
	}
}

// finishWoken ends the reader: the last lines out, the pipe closed, done
// called. k.mu is held.
func (r *Reader) finishWoken() {
	k := &r.wake
	k.leave()
	r.finishLines()
	_ = r.f.Close()
	k.done()
}

// leave marks the woken reader finished and takes it off the waiter and
// its dump timer. k.mu is held.
func (k *wakeState) leave() {
	k.finished = true
	if k.timer != nil {
		k.timer.Stop()
	}
	if k.shrink != nil {
		k.shrink.Stop()
	}
	k.w.Unwatch(k.fd)
}

// fallBack runs the blocking read loop on this goroutine, once the waiter
// can no longer wake the reader. k.mu is held, and released.
func (r *Reader) fallBack() {
	k := &r.wake
	k.leave()
	// The blocking loop neither grows the pipe nor shrinks it: shrink it
	// now (refused while it holds more than its first size).
	r.rs.pipe.shrink(r.rs.fd)
	k.mu.Unlock()
	r.usePoller()
	_ = r.rs.init(r.f)
	r.unwake()
	r.loop()
	_ = r.f.Close()
	k.done()
}

// unwake hands the reader back to blocking reads, with the deadline a
// blocking read would have had.
func (r *Reader) unwake() {
	r.deadlineMu.Lock()
	defer r.deadlineMu.Unlock()
	r.woken = false
	r.setFileDeadlineLocked()
}
