// Package xsvm runs the real vmre command against a real avalanchego
// plugin: avalanchego v1.14.0's example VM, xsvm (protocol 44), built from
// the module proxy by ./plugin, a module of its own so the binary is built
// with exactly the dependency versions avalanchego v1.14.0 requires.
//
// TestMain builds both binaries once ($VMRE_E2E_BIN and $XSVM_E2E_PLUGIN
// name prebuilt ones instead). Every test starts its own vmre, which
// launches its own xsvm, and waits on what they print and on process
// exits; the only time bounds are generous ones.
package xsvm

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// waitBound bounds every wait on the plugin or vmre: far above what any
// step takes on a loaded 2-core machine, only there so a hang fails.
const waitBound = 3 * time.Minute

var (
	vmreBin  string // the vmre command built from this repository
	xsvmBin  string // the xsvm plugin, named xsvm so vmre calls its runtime "xsvm"
	buildErr error
)

func TestMain(m *testing.M) {
	os.Exit(run(m))
}

func run(m *testing.M) int {
	wd, err := os.Getwd()
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	dir, err := os.MkdirTemp("", "vmre-xsvm-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	defer os.RemoveAll(dir)

	vmreBin = os.Getenv("VMRE_E2E_BIN")
	if vmreBin == "" {
		vmreBin = filepath.Join(dir, "vmre")
		buildErr = goBuild(filepath.Join(wd, "..", ".."), vmreBin, "./cmd/vmre")
	}
	xsvmBin = os.Getenv("XSVM_E2E_PLUGIN")
	if xsvmBin == "" && buildErr == nil {
		xsvmBin = filepath.Join(dir, "xsvm")
		buildErr = goBuild(filepath.Join(wd, "plugin"), xsvmBin, ".")
	}
	return m.Run()
}

func goBuild(dir, out, pkg string) error {
	cmd := exec.Command("go", "build", "-o", out, pkg)
	cmd.Dir = dir
	if b, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("go build %s in %s: %w\n%s", pkg, dir, err, b)
	}
	return nil
}

func requireBinaries(t *testing.T) {
	t.Helper()
	if buildErr != nil {
		t.Fatal(buildErr)
	}
}

// logLine is one JSON log line of vmre.
type logLine map[string]any

func (l logLine) str(key string) string {
	s, _ := l[key].(string)
	return s
}

func (l logLine) int(key string) int {
	f, _ := l[key].(float64)
	return int(f)
}

// fromXSVM reports whether the line is bridged plugin output (each vmre
// here runs one plugin, xsvm).
func (l logLine) fromXSVM() bool {
	return l.str("stream") != ""
}

// vmreProc is a running vmre command whose stderr carries JSON logs.
type vmreProc struct {
	cmd     *exec.Cmd
	stdout  *lines
	readers sync.WaitGroup // the stdout and stderr readers

	mu      sync.Mutex
	logs    []logLine
	changed chan struct{} // closed and replaced on every new line and at EOF
	eof     bool
	readErr error
}

// lines collects the plain text lines of a stream.
type lines struct {
	mu      sync.Mutex
	all     []string
	changed chan struct{}
	eof     bool
}

// startVMRE starts vmre with args, logging JSON at debug level to stderr.
// It is killed when the test ends if it is still running.
func startVMRE(t *testing.T, args ...string) *vmreProc {
	t.Helper()
	requireBinaries(t)
	cmd := exec.Command(vmreBin, args...)
	stderr, err := cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	p := &vmreProc{cmd: cmd, changed: make(chan struct{}), stdout: &lines{changed: make(chan struct{})}}
	t.Cleanup(func() {
		if cmd.ProcessState == nil {
			_ = cmd.Process.Kill()
			_ = cmd.Wait()
		}
		if t.Failed() {
			p.mu.Lock()
			for _, l := range p.logs {
				b, _ := json.Marshal(l)
				t.Logf("vmre log: %s", b)
			}
			p.mu.Unlock()
		}
	})
	p.readers.Add(2)
	go func() { defer p.readers.Done(); p.readLogs(stderr) }()
	go func() { defer p.readers.Done(); p.stdout.read(stdout) }()
	return p
}

func (p *vmreProc) readLogs(r io.Reader) {
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64<<10), 4<<20)
	for sc.Scan() {
		var l logLine
		if err := json.Unmarshal(sc.Bytes(), &l); err != nil {
			l = logLine{"unparsed": sc.Text()}
		}
		p.mu.Lock()
		p.logs = append(p.logs, l)
		close(p.changed)
		p.changed = make(chan struct{})
		p.mu.Unlock()
	}
	p.mu.Lock()
	p.eof, p.readErr = true, sc.Err()
	close(p.changed)
	p.mu.Unlock()
}

func (s *lines) read(r io.Reader) {
	sc := bufio.NewScanner(r)
	for sc.Scan() {
		s.mu.Lock()
		s.all = append(s.all, sc.Text())
		close(s.changed)
		s.changed = make(chan struct{})
		s.mu.Unlock()
	}
	s.mu.Lock()
	s.eof = true
	close(s.changed)
	s.mu.Unlock()
}

// waitLog blocks until a log line matching match has been read and returns
// the first one. It fails the test if stderr ends or waitBound passes first.
func (p *vmreProc) waitLog(t *testing.T, what string, match func(logLine) bool) logLine {
	t.Helper()
	timeout := time.NewTimer(waitBound)
	defer timeout.Stop()
	seen := 0
	for {
		p.mu.Lock()
		for ; seen < len(p.logs); seen++ {
			if match(p.logs[seen]) {
				l := p.logs[seen]
				p.mu.Unlock()
				return l
			}
		}
		eof, readErr, changed := p.eof, p.readErr, p.changed
		p.mu.Unlock()
		if eof {
			t.Fatalf("vmre's log ended (read error: %v) before %s", readErr, what)
		}
		select {
		case <-changed:
		case <-timeout.C:
			t.Fatalf("no %s in vmre's log after %s", what, waitBound)
		}
	}
}

// allLogs returns the log lines read so far.
func (p *vmreProc) allLogs() []logLine {
	p.mu.Lock()
	defer p.mu.Unlock()
	return append([]logLine(nil), p.logs...)
}

// wait waits for vmre to exit and for its stderr to be read to the end, and
// returns its exit code.
func (p *vmreProc) wait(t *testing.T) int {
	t.Helper()
	done := make(chan error, 1)
	go func() {
		// Wait closes the pipes once the process exits: read them to the
		// end first.
		p.readers.Wait()
		done <- p.cmd.Wait()
	}()
	select {
	case <-done:
	case <-time.After(waitBound):
		t.Fatalf("vmre did not exit within %s", waitBound)
	}
	return p.cmd.ProcessState.ExitCode()
}

// running starts `vmre run` on the xsvm plugin (at plugin, or the shared
// binary when empty) and waits for the runtime to be running; it returns
// vmre and the "runtime running" line (pid, addr).
func running(t *testing.T, plugin string, flags ...string) (*vmreProc, logLine) {
	t.Helper()
	requireBinaries(t)
	if plugin == "" {
		plugin = xsvmBin
	}
	args := append([]string{"run", "--listen", "127.0.0.1:0", "--log-format", "json", "--log-level", "debug",
		"--protocol-version", "44"}, flags...)
	p := startVMRE(t, append(args, "--", plugin)...)
	up := p.waitLog(t, `"runtime running"`, func(l logLine) bool { return l.str("message") == "runtime running" })
	if up.int("pid") <= 0 || up.str("addr") == "" {
		t.Fatalf("runtime running without pid or addr: %v", up)
	}
	return p, up
}

// signal sends sig to vmre.
func (p *vmreProc) signal(t *testing.T, sig syscall.Signal) {
	t.Helper()
	if err := p.cmd.Process.Signal(sig); err != nil {
		t.Fatal(err)
	}
}

// testContext is t.Context bounded by waitBound.
func testContext(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(t.Context(), waitBound)
	t.Cleanup(cancel)
	return ctx
}

// messages returns the messages of xsvm's bridged output lines.
func xsvmMessages(logs []logLine) []string {
	var out []string
	for _, l := range logs {
		if l.fromXSVM() {
			out = append(out, l.str("message"))
		}
	}
	return out
}

func containsAny(msgs []string, sub string) bool {
	for _, m := range msgs {
		if strings.Contains(m, sub) {
			return true
		}
	}
	return false
}
