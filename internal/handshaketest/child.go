package handshaketest

import (
	"bufio"
	"io"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"
)

// Child is the test binary run again as a helper process (a plugin, a
// foreign caller): the test's TestMain picks its role from a variable in
// the environment StartChild was given. Lines carries its stdout, one line
// at a time, and is closed at EOF.
type Child struct {
	Cmd   *exec.Cmd
	Stdin io.WriteCloser
	Lines <-chan string
}

// StartChild starts os.Args[0] with env added to this process's
// environment, and the race detector's one-second sleep at exit turned
// off. When the test ends its stdin is closed, it is given grace to exit
// (0: none), then killed, and it is always reaped.
func StartChild(tb testing.TB, grace time.Duration, env ...string) *Child {
	tb.Helper()
	cmd := exec.Command(os.Args[0])
	cmd.Env = append(append(os.Environ(), "GORACE="+os.Getenv("GORACE")+" atexit_sleep_ms=0"), env...)
	cmd.Stderr = os.Stderr
	stdin, err := cmd.StdinPipe()
	if err != nil {
		tb.Fatal(err)
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		tb.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		tb.Fatal(err)
	}
	lines := make(chan string, 8)
	go func() {
		s := bufio.NewScanner(stdout)
		for s.Scan() {
			lines <- s.Text()
		}
		close(lines)
	}()
	tb.Cleanup(func() {
		_ = stdin.Close()
		done := make(chan struct{})
		go func() { _ = cmd.Wait(); close(done) }()
		select {
		case <-done:
		case <-time.After(grace):
			_ = cmd.Process.Kill()
			<-done
		}
	})
	return &Child{Cmd: cmd, Stdin: stdin, Lines: lines}
}

// Next waits for the child's next line that starts with the word prefix
// and returns the rest of it (after the space), skipping other lines. It
// fails the test if the child ends first, or if it prints none before nine
// tenths of the time left to the test binary's -timeout have passed (so
// the failure names the line rather than a panic's goroutine dump); with
// no -timeout it waits as long as the child lives. The wait is not a
// speed check: a loaded machine may take long to run the child.
func (c *Child) Next(tb testing.TB, prefix string) string {
	tb.Helper()
	var timeout <-chan time.Time
	if d, ok := tb.(interface{ Deadline() (time.Time, bool) }); ok {
		if deadline, ok := d.Deadline(); ok {
			timeout = time.After(time.Until(deadline) * 9 / 10)
		}
	}
	for {
		select {
		case l, ok := <-c.Lines:
			if !ok {
				tb.Fatalf("child exited before printing %q", prefix)
			}
			if l == prefix {
				return ""
			}
			if rest, ok := strings.CutPrefix(l, prefix+" "); ok {
				return rest
			}
		case <-timeout:
			tb.Fatalf("no %q line from child", prefix)
		}
	}
}
