//go:build linux

package subprocess_test

import (
	"errors"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/vmre/vmre"
	"github.com/vmre/vmre/subprocess"
	"golang.org/x/sys/unix"
)

// collector gathers output lines through Config.OnOutput and lets a test
// wait for a given one.
type collector struct {
	mu      sync.Mutex
	lines   []outLine
	changed chan struct{}
}

func newCollector() *collector { return &collector{changed: make(chan struct{})} }

// outLine is a kept output line with its text as a string.
type outLine struct {
	subprocess.Line
	Text string
}

func asOut(l *subprocess.Line) outLine { return outLine{l.Clone(), string(l.Text)} }

func (c *collector) add(l *subprocess.Line) {
	c.mu.Lock()
	c.lines = append(c.lines, asOut(l))
	close(c.changed)
	c.changed = make(chan struct{})
	c.mu.Unlock()
}

// waitFor returns the first line satisfying match. It fails the test if
// none has come by hangBound: only a hang is ruled out, as the package's
// parallel tests queue their plugins' starts on one spawner, and on two
// busy cores under -race a start has waited more than 10 s.
func (c *collector) waitFor(t testing.TB, match func(outLine) bool) outLine {
	t.Helper()
	return c.waitForUnless(t, match, nil)
}

// waitForUnless is waitFor that also fails once ended is closed without a
// matching line, so that a wait on a plugin that has already failed ends
// at once.
func (c *collector) waitForUnless(t testing.TB, match func(outLine) bool, ended <-chan struct{}) outLine {
	t.Helper()
	bound := hangBound(t)
	for i, last := 0, false; ; {
		c.mu.Lock()
		for ; i < len(c.lines); i++ {
			if match(c.lines[i]) {
				l := c.lines[i]
				c.mu.Unlock()
				return l
			}
		}
		changed := c.changed
		c.mu.Unlock()
		if last {
			t.Fatalf("no matching output line before the wait ended; got %d lines", i)
		}
		select {
		case <-changed:
		case <-ended:
			last, ended = true, nil // look at the lines once more
		case <-bound:
			t.Fatalf("no matching output line; got %d lines", i)
		}
	}
}

// hangBound returns a channel that fires at nine tenths of the time the
// test has left before go test's -timeout, so that a wait for an event
// that never comes fails by name rather than in the timeout's panic. It
// never fires without a -timeout.
func hangBound(t testing.TB) <-chan time.Time {
	if d, ok := t.(interface{ Deadline() (time.Time, bool) }); ok {
		if deadline, ok := d.Deadline(); ok {
			return time.After(time.Until(deadline) * 9 / 10)
		}
	}
	return nil
}

// waitForNumber waits for a line that is prefix and a number, and returns
// the number.
func (c *collector) waitForNumber(t testing.TB, prefix string) int {
	t.Helper()
	l := c.waitFor(t, func(l outLine) bool { return strings.HasPrefix(l.Text, prefix) })
	n, err := strconv.Atoi(strings.TrimPrefix(l.Text, prefix))
	if err != nil {
		t.Fatal(err)
	}
	return n
}

func (c *collector) snapshot() []outLine {
	c.mu.Lock()
	defer c.mu.Unlock()
	return append([]outLine(nil), c.lines...)
}

func textIs(s string) func(outLine) bool {
	return func(l outLine) bool { return l.Text == s }
}

// gone reports whether no process has pid (for a reaped child).
func gone(pid int) bool {
	return errors.Is(unix.Kill(pid, 0), unix.ESRCH)
}

// pidfds holds pidfds opened while their processes were alive, so that a
// test can wait for them to exit without racing PID reuse. At cleanup every
// process still alive is SIGKILLed through its pidfd, so a failing test
// leaves nothing behind (and kills nothing else).
type pidfds map[int]int

func openPidfds(t testing.TB, pids ...int) pidfds {
	t.Helper()
	fds := pidfds{}
	for _, pid := range pids {
		fd, err := unix.PidfdOpen(pid, 0)
		if err != nil {
			t.Fatalf("pidfd_open(%d): %v (already gone?)", pid, err)
		}
		fds[pid] = fd
	}
	t.Cleanup(func() {
		for _, fd := range fds {
			_ = unix.PidfdSendSignal(fd, unix.SIGKILL, nil, 0)
			unix.Close(fd)
		}
	})
	return fds
}

// waitExited polls the pidfds until every process has exited and returns
// the pids still alive after within.
func (fds pidfds) waitExited(within time.Duration) []int {
	deadline := time.Now().Add(within)
	pending := map[int]int{}
	for pid, fd := range fds {
		pending[pid] = fd
	}
	for len(pending) > 0 {
		left := time.Until(deadline)
		if left <= 0 {
			break
		}
		polls := make([]unix.PollFd, 0, len(pending))
		pids := make([]int, 0, len(pending))
		for pid, fd := range pending {
			polls = append(polls, unix.PollFd{Fd: int32(fd), Events: unix.POLLIN})
			pids = append(pids, pid)
		}
		n, err := unix.Poll(polls, int(left.Milliseconds())+1)
		if err != nil && !errors.Is(err, unix.EINTR) {
			break
		}
		if n <= 0 {
			continue
		}
		for i, p := range polls {
			if p.Revents&(unix.POLLIN|unix.POLLHUP) != 0 {
				delete(pending, pids[i])
			}
		}
	}
	alive := make([]int, 0, len(pending))
	for pid := range pending {
		alive = append(alive, pid)
	}
	return alive
}

// streamTail returns the texts of the exit error's tail lines of stream.
func streamTail(e *vmre.ExitError, stream string) []string {
	var out []string
	for _, l := range e.Tail {
		if l.Stream == stream {
			out = append(out, l.Text)
		}
	}
	return out
}

// pinOf parses a SHA-256 pin the test knows to be valid ("": no pin).
func pinOf(t testing.TB, s string) subprocess.SHA256 {
	t.Helper()
	var pin subprocess.SHA256
	if err := pin.UnmarshalText([]byte(s)); err != nil {
		t.Fatal(err)
	}
	return pin
}
