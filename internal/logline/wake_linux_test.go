package logline

import (
	"errors"
	"fmt"
	"os"
	"runtime"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// Run, on a goroutine of its own, is what Start falls back to: the same
// lines, panics grouped and bounded in time.
func TestReaderRunBlocking(t *testing.T) {
	t.Parallel()
	lines, _ := feedMode(t, true, Options{MaxLineBytes: 4}, "a\nbb\n", "abcdefgh")
	if got, want := strings.Join(texts(lines), "|"), "a|bb|abcd|efgh"; got != want {
		t.Errorf("lines %q, want %q", got, want)
	}
	lines, _ = feedMode(t, true, Options{}, "panic: boom\n\tmain.go:1\n", "after\n")
	if got, want := strings.Join(texts(lines), "|"), "panic: boom|after"; got != want {
		t.Fatalf("lines %q, want %q", got, want)
	}
	if !lines[0].Panic || string(lines[0].Dump) != "\tmain.go:1" {
		t.Errorf("panic line %+v", lines[0])
	}

	got := make(chan Line, 4)
	_, w, done := pipeReaderMode(t, NewBridge(Options{OnLine: func(l *Line) { got <- l.Clone() }}), Stderr, true)
	defer func() { w.Close(); <-done }()
	if _, err := w.WriteString("panic: boom\n"); err != nil {
		t.Fatal(err)
	}
	select {
	case l := <-got:
		if !l.Panic {
			t.Errorf("line %+v", l)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("the panic was not handed on while the pipe stayed open")
	}
}

// A started reader whose pipe is quiet holds no goroutine: a node keeps
// hundreds of quiet plugins, two streams each. Lines written later still
// arrive, in order, and each reader ends at EOF. Not parallel: it counts
// the process's goroutines.
func TestReaderQuietHoldsNoGoroutine(t *testing.T) {
	const n = 100
	got := make(chan string, 2*n)
	b := NewBridge(Options{OnLine: func(l *Line) { got <- string(l.Text) }})
	before := runtime.NumGoroutine()
	ws := make([]*os.File, n)
	dones := make([]<-chan struct{}, n)
	for i := range n {
		_, ws[i], dones[i] = pipeReader(t, b, Stdout)
	}
	if grown := runtime.NumGoroutine() - before; grown >= n/2 {
		t.Errorf("%d quiet readers hold %d goroutines", n, grown)
	}
	for i, w := range ws {
		if _, err := fmt.Fprintf(w, "first %d\n", i); err != nil {
			t.Fatal(err)
		}
	}
	seen := map[string]bool{}
	for range n {
		seen[<-got] = true
	}
	for i, w := range ws {
		if _, err := fmt.Fprintf(w, "second %d\n", i); err != nil {
			t.Fatal(err)
		}
		w.Close()
		<-dones[i]
		if l := <-got; l != fmt.Sprintf("second %d", i) {
			t.Errorf("reader %d: %q after its first line", i, l)
		}
	}
	for i := range n {
		if !seen[fmt.Sprintf("first %d", i)] {
			t.Errorf("reader %d: first line missing", i)
		}
	}
}

// StopWaiting ends a started reader whose pipe stays open (a process
// outside the plugin's group holds it): what the pipe held is read, the
// unterminated last line included, and the reader ends.
func TestReaderStopWaitingStarted(t *testing.T) {
	t.Parallel()
	var lines []string
	b := NewBridge(Options{OnLine: func(l *Line) { lines = append(lines, string(l.Text)) }})
	rd, w, done := pipeReader(t, b, Stdout)
	defer w.Close()
	if _, err := w.WriteString("one\ntwo"); err != nil {
		t.Fatal(err)
	}
	rd.StopWaiting()
	<-done
	if got := strings.Join(lines, "|"); got != "one|two" {
		t.Errorf("lines %q, want one|two", got)
	}
}

// If the waiter fails, a started reader reads on its own: no line lost,
// and it still ends at EOF.
func TestReaderWaiterFails(t *testing.T) {
	t.Parallel()
	got := make(chan string, 4)
	b := NewBridge(Options{OnLine: func(l *Line) { got <- string(l.Text) }})
	rd, w, done := pipeReader(t, b, Stdout)
	if _, err := w.WriteString("before\n"); err != nil {
		t.Fatal(err)
	}
	if l := <-got; l != "before" {
		t.Fatalf("line %q", l)
	}
	failed := make(chan struct{})
	go func() { defer close(failed); rd.onReadable(false) }()
	if _, err := w.WriteString("after\n"); err != nil {
		t.Fatal(err)
	}
	if l := <-got; l != "after" {
		t.Fatalf("line %q", l)
	}
	w.Close()
	<-done
	<-failed
}

// floodPipe returns a new pipe, whose write end the test's cleanup
// closes, and the size pipes start at here; it skips the test where that
// is pipeFloodSize or more, since no flood could grow the pipe.
func floodPipe(t *testing.T) (pr, pw *os.File, base int) {
	t.Helper()
	pr, pw = testPipe(t)
	base, err := unix.FcntlInt(pw.Fd(), unix.F_GETPIPE_SZ, 0)
	if err != nil {
		t.Fatal(err)
	}
	if base >= pipeFloodSize {
		t.Skipf("pipes start at %d bytes here", base)
	}
	return pr, pw, base
}

// A pipe the plugin fills grows, so that the reader drains it with large
// reads and rarely finds it empty, and shrinks back once it has stayed
// empty for pipeIdle. Every line arrives, in order.
func TestReaderGrowsFloodedPipe(t *testing.T) {
	t.Parallel()
	pr, pw, base := floodPipe(t)
	// Fill the pipe before the reader starts: its first read takes the
	// pipe's whole capacity.
	line := strings.Repeat("x", 1023) + "\n"
	n := base / len(line)
	if _, err := pw.WriteString(strings.Repeat(line, n)); err != nil {
		t.Fatal(err)
	}
	sizes := make(chan int, 4)
	got := make(chan int, n+1)
	b := NewBridge(Options{OnLine: func(l *Line) { got <- len(l.Text) }})
	b.pipeHook = func(size int) {
		now, err := unix.FcntlInt(pw.Fd(), unix.F_GETPIPE_SZ, 0)
		if err != nil || now != size {
			t.Errorf("the pipe holds %d bytes (%v), the reader set %d", now, err, size)
		}
		sizes <- size
	}
	done := make(chan struct{})
	b.Reader(Stdout, pr).Start(func() { close(done) })
	for what, want := range []int{pipeFloodSize, base} {
		select {
		case size := <-sizes:
			if size != want {
				t.Fatalf("resize %d to %d bytes, want %d", what, size, want)
			}
		case <-time.After(30 * time.Second):
			t.Fatalf("resize %d to %d bytes did not come", what, want)
		}
	}
	pw.Close()
	<-done
	if len(got) != n {
		t.Errorf("%d lines, want %d", len(got), n)
	}
	// The buffer it gave back to the pool serves the next reader.
	if lines, _ := feed(t, Options{}, "next\n"); len(lines) != 1 || string(lines[0].Text) != "next" {
		t.Errorf("the next reader read %d lines", len(lines))
	}
}

// A woken reader whose grown pipe runs empty waits for more on its own
// goroutine: lines written then arrive, in order, and StopWaiting ends
// the wait at once, not after the pipe idle time.
func TestReaderWaitsForFlood(t *testing.T) {
	t.Parallel()
	pr, pw, base := floodPipe(t)
	n := base / 1024
	for i := range n {
		if _, err := fmt.Fprintf(pw, "%04d %s\n", i, strings.Repeat("x", 1018)); err != nil {
			t.Fatal(err)
		}
	}
	got := make(chan string, n+10)
	b := NewBridge(Options{OnLine: func(l *Line) { got <- string(l.Text[:4]) }})
	b.pipeIdle = time.Hour // only StopWaiting can end the wait
	grown := make(chan int, 2)
	b.pipeHook = func(size int) { grown <- size }
	done := make(chan struct{})
	rd := b.Reader(Stdout, pr)
	rd.Start(func() { close(done) })
	next := 0
	expect := func(upto int) {
		t.Helper()
		for ; next < upto; next++ {
			select {
			case s := <-got:
				if want := fmt.Sprintf("%04d", next); s != want {
					t.Fatalf("line %q, want %q", s, want)
				}
			case <-time.After(30 * time.Second):
				t.Fatalf("line %d did not come", next)
			}
		}
	}
	expect(n)
	if size := <-grown; size != pipeFloodSize {
		t.Fatalf("pipe set to %d bytes, want %d", size, pipeFloodSize)
	}
	// The pipe is empty and grown: the reader waits for more.
	for i := n; i < n+10; i++ {
		if _, err := fmt.Fprintf(pw, "%04d\n", i); err != nil {
			t.Fatal(err)
		}
	}
	expect(n + 10)
	go rd.StopWaiting() // it blocks while the reader holds its lock
	select {
	case <-done:
	case <-time.After(30 * time.Second):
		t.Fatal("StopWaiting did not end the reader waiting for a flood")
	}
	if len(grown) != 0 {
		t.Errorf("the pipe was resized again to %d bytes", <-grown)
	}
}

// fdOf returns f's descriptor without Fd's side effect (it makes a file
// in the poller blocking).
func fdOf(t *testing.T, f *os.File) int {
	t.Helper()
	rc, err := f.SyscallConn()
	if err != nil {
		t.Fatal(err)
	}
	fd := -1
	if err := rc.Control(func(u uintptr) { fd = int(u) }); err != nil {
		t.Fatal(err)
	}
	return fd
}

func nonblocking(t *testing.T, f *os.File) bool {
	t.Helper()
	fl, err := unix.FcntlInt(uintptr(fdOf(t, f)), unix.F_GETFL, 0)
	if err != nil {
		t.Fatal(err)
	}
	return fl&unix.O_NONBLOCK != 0
}

// NewPipe's read end is non-blocking and outside the runtime's poller
// (the poller would be woken at every write of a flooding plugin), and
// its write end, the plugin's, is blocking.
func TestNewPipeOutsidePoller(t *testing.T) {
	t.Parallel()
	r, w := testPipe(t)
	if err := r.SetReadDeadline(time.Now()); !errors.Is(err, os.ErrNoDeadline) {
		t.Errorf("the read end is in the poller: SetReadDeadline: %v", err)
	}
	if !nonblocking(t, r) {
		t.Error("the read end is blocking")
	}
	if nonblocking(t, w) {
		t.Error("the write end is non-blocking")
	}
}

// A reader also takes a file in the runtime's poller (an os.Pipe's read
// end), started or run.
func TestReaderFileInPoller(t *testing.T) {
	t.Parallel()
	for _, run := range []bool{false, true} {
		pr, pw, err := os.Pipe()
		if err != nil {
			t.Fatal(err)
		}
		got := make(chan string, 4)
		rd := NewBridge(Options{OnLine: func(l *Line) { got <- string(l.Text) }}).Reader(Stdout, pr)
		done := make(chan struct{})
		if run {
			go func() { defer close(done); rd.Run() }()
		} else {
			rd.Start(func() { close(done) })
		}
		if _, err := pw.WriteString("one\n"); err != nil {
			t.Fatal(err)
		}
		if l := <-got; l != "one" {
			t.Errorf("run %v: line %q", run, l)
		}
		if _, err := pw.WriteString("two"); err != nil {
			t.Fatal(err)
		}
		rd.StopWaiting()
		<-done
		pw.Close()
		if l := <-got; l != "two" {
			t.Errorf("run %v: line %q after StopWaiting", run, l)
		}
	}
}

// Run on NewPipe's read end waits in the poller, for a duplicate of the
// descriptor: lines written after it found the pipe empty arrive.
func TestReaderRunWaits(t *testing.T) {
	t.Parallel()
	pr, pw := testPipe(t)
	got := make(chan string, 4)
	rd := NewBridge(Options{OnLine: func(l *Line) { got <- string(l.Text) }}).Reader(Stdout, pr)
	done := make(chan struct{})
	go func() { defer close(done); rd.Run() }()
	for _, want := range []string{"one", "two"} {
		if _, err := pw.WriteString(want + "\n"); err != nil {
			t.Fatal(err)
		}
		select {
		case l := <-got:
			if l != want {
				t.Errorf("line %q, want %q", l, want)
			}
		case <-done:
			t.Fatalf("Run ended before line %q", want)
		}
	}
	pw.Close()
	<-done
}

// Run on NewPipe's read end: StopWaiting, called before Run began, ends
// it while the pipe stays open, once it has read what the pipe held.
func TestReaderRunAfterStopWaiting(t *testing.T) {
	t.Parallel()
	pr, pw := testPipe(t)
	if _, err := pw.WriteString("one\ntwo"); err != nil {
		t.Fatal(err)
	}
	var lines []string
	rd := NewBridge(Options{OnLine: func(l *Line) { lines = append(lines, string(l.Text)) }}).Reader(Stdout, pr)
	rd.StopWaiting()
	done := make(chan struct{})
	go func() { defer close(done); rd.Run() }()
	select {
	case <-done:
	case <-time.After(time.Minute):
		t.Fatal("Run waited for more after StopWaiting")
	}
	if got := strings.Join(lines, "|"); got != "one|two" {
		t.Errorf("lines %q, want one|two", got)
	}
}

// If no descriptor is left to duplicate NewPipe's read end into the
// poller, Run reads it blocking instead: every line arrives, and it ends
// at EOF. Not parallel: it lowers the process's descriptor limit.
func TestReaderRunWithoutDescriptors(t *testing.T) {
	pr, pw := testPipe(t)
	got := make(chan string, 4)
	rd := NewBridge(Options{OnLine: func(l *Line) { got <- string(l.Text) }}).Reader(Stdout, pr)

	var old unix.Rlimit
	if err := unix.Getrlimit(unix.RLIMIT_NOFILE, &old); err != nil {
		t.Fatal(err)
	}
	// Take every descriptor below a limit a little above the highest in
	// use, so that the reader's duplicate fails with EMFILE.
	limit := unix.Rlimit{Cur: uint64(max(fdOf(t, pr), fdOf(t, pw))) + 16, Max: old.Max}
	if limit.Cur >= old.Cur {
		t.Skipf("the descriptor limit %d is too low to lower", old.Cur)
	}
	if err := unix.Setrlimit(unix.RLIMIT_NOFILE, &limit); err != nil {
		t.Fatal(err)
	}
	var taken []int
	release := func() {
		for _, fd := range taken {
			unix.Close(fd)
		}
		taken = nil
		if err := unix.Setrlimit(unix.RLIMIT_NOFILE, &old); err != nil {
			t.Error(err)
		}
	}
	defer func() {
		if taken != nil {
			release()
		}
	}()
	for {
		fd, err := unix.Dup(fdOf(t, pw))
		if err != nil {
			if !errors.Is(err, unix.EMFILE) {
				t.Fatal(err)
			}
			break
		}
		taken = append(taken, fd)
	}
	done := make(chan struct{})
	go func() { defer close(done); rd.Run() }()
	// Run made the descriptor blocking when the duplicate failed.
	for deadline := time.Now().Add(time.Minute); nonblocking(t, pr); {
		if time.Now().After(deadline) {
			t.Fatal("Run did not make the read end blocking")
		}
		time.Sleep(time.Millisecond)
	}
	release()
	if _, err := pw.WriteString("one\ntwo\n"); err != nil {
		t.Fatal(err)
	}
	if a, b := <-got, <-got; a != "one" || b != "two" {
		t.Errorf("lines %q, %q", a, b)
	}
	pw.Close()
	<-done
}

// A plugin that writes line after line has them read in batches: a reader
// woken less than chattyGap after it last read data waits batchWait
// first, so that it reads what is written meanwhile at once. A plugin that
// writes a line now and then has each read at once. Every line arrives,
// in order.
func TestReaderBatchesChattyPlugin(t *testing.T) {
	t.Parallel()
	got := make(chan string, 1)
	b := NewBridge(Options{OnLine: func(l *Line) { got <- string(l.Text) }})
	var pauses atomic.Int64
	b.batchHook = func() { pauses.Add(1) }
	_, w, done := pipeReader(t, b, Stdout)
	defer func() { w.Close(); <-done }()
	next := 0
	// writeAndWait writes the next line and waits until it is handed on.
	writeAndWait := func() {
		t.Helper()
		if _, err := fmt.Fprintf(w, "%d\n", next); err != nil {
			t.Fatal(err)
		}
		select {
		case s := <-got:
			if want := strconv.Itoa(next); s != want {
				t.Fatalf("line %q, want %q", s, want)
			}
		case <-time.After(30 * time.Second):
			t.Fatalf("line %d did not come", next)
		}
		next++
	}
	// Each line more than chattyGap after the last was read.
	for range 3 {
		writeAndWait()
		time.Sleep(2 * chattyGap)
	}
	if n := pauses.Load(); n != 0 {
		t.Errorf("the reader waited %d times for more of a quiet plugin's lines", n)
	}
	// Each line as soon as the last was handed on: the reader is woken
	// again within chattyGap of its read, unless the machine is so busy
	// that its wake comes later, hence the tries.
	for try := 0; pauses.Load() == 0; try++ {
		if try == 1000 {
			t.Fatal("the reader never waited for more of a chatty plugin's lines")
		}
		writeAndWait()
	}
}
