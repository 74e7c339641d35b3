// Package e2e runs the vmre binary the way people use it and reaches it the
// three ways the README documents: curl, a Node.js gRPC client and the
// browser dashboard.
//
// It builds ./cmd/vmre once (with -race when the tests run with -race;
// $VMRE_E2E_BIN names a prebuilt binary instead) and starts it on loopback ports chosen by the kernel. Node, curl, the npm
// dependencies (npm ci in web/ and examples/node/) and /usr/bin/chromium
// are prerequisites: a test whose tool is missing fails when CI is set
// (CI=true) and is skipped otherwise.
package e2e

import (
	"bufio"
	"context"
	"errors"
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

var (
	repoRoot string
	vmreBin  string
	buildErr error
)

func TestMain(m *testing.M) {
	os.Exit(run(m))
}

func run(m *testing.M) int {
	if os.Getenv(netVMChild) != "" {
		// This process is the VM of TestTwoHosts, not a test run.
		return netVM()
	}
	wd, err := os.Getwd()
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	repoRoot = filepath.Dir(wd)
	dir, err := os.MkdirTemp("", "vmre-e2e-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	defer os.RemoveAll(dir)
	if bin := os.Getenv("VMRE_E2E_BIN"); bin != "" {
		// A prebuilt binary (CI may build it once for several steps).
		vmreBin = bin
		return m.Run()
	}
	vmreBin = filepath.Join(dir, "vmre")
	args := []string{"build", "-o", vmreBin}
	if raceEnabled {
		args = append(args, "-race")
	}
	build := exec.Command("go", append(args, "./cmd/vmre")...)
	build.Dir = repoRoot
	if out, err := build.CombinedOutput(); err != nil {
		buildErr = fmt.Errorf("go build ./cmd/vmre: %w\n%s", err, out)
	}
	return m.Run()
}

// inCI reports whether missing tools must fail tests rather than skip them.
func inCI() bool {
	v := os.Getenv("CI")
	return v != "" && v != "false" && v != "0"
}

// require fails (in CI) or skips the test when a prerequisite is missing.
func require(t *testing.T, what string, err error) {
	t.Helper()
	if err == nil {
		return
	}
	if inCI() {
		t.Fatalf("prerequisite missing: %s: %v", what, err)
	}
	t.Skipf("prerequisite missing (set CI=true to make this fail): %s: %v", what, err)
}

func requireTool(t *testing.T, name string) string {
	t.Helper()
	path, err := exec.LookPath(name)
	require(t, name+" on PATH", err)
	return path
}

func requireFile(t *testing.T, what, path string) {
	t.Helper()
	_, err := os.Stat(path)
	require(t, what, err)
}

func requireNodeModules(t *testing.T, dir, pkg string) {
	t.Helper()
	requireFile(t, fmt.Sprintf("npm ci --prefix %s (for %s)", dir, pkg), filepath.Join(repoRoot, dir, "node_modules", pkg, "package.json"))
}

// engine is a running `vmre run`.
type engine struct {
	t      *testing.T
	cmd    *exec.Cmd
	waited chan struct{}
	err    error // from Wait, valid after waited

	mu    sync.Mutex
	lines []string // stdout, in order
	more  chan struct{}
}

// startVMRE runs `vmre run --listen 127.0.0.1:0 args...` and stops it with
// SIGTERM at the end of the test, which must make it exit 0.
func startVMRE(t *testing.T, args ...string) *engine {
	t.Helper()
	if buildErr != nil {
		t.Fatal(buildErr)
	}
	full := append([]string{"run", "--listen", "127.0.0.1:0", "--log-format", "json"}, args...)
	cmd := exec.Command(vmreBin, full...)
	cmd.Dir = t.TempDir()
	cmd.Env = append(os.Environ(), "XDG_RUNTIME_DIR="+t.TempDir())
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stderr = &testLogWriter{t: t, prefix: "vmre stderr: "}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	e := &engine{t: t, cmd: cmd, waited: make(chan struct{}), more: make(chan struct{}, 1)}
	scanned := make(chan struct{})
	go func() {
		defer close(scanned)
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			line := sc.Text()
			t.Logf("vmre stdout: %s", line)
			e.mu.Lock()
			e.lines = append(e.lines, line)
			e.mu.Unlock()
			select {
			case e.more <- struct{}{}:
			default:
			}
		}
	}()
	go func() {
		<-scanned
		e.err = cmd.Wait()
		close(e.waited)
		select {
		case e.more <- struct{}{}:
		default:
		}
	}()
	t.Cleanup(func() { e.stop() })
	return e
}

// stop sends SIGTERM and requires a clean exit within a minute (a bound
// for a hang, not a speed check).
func (e *engine) stop() {
	t := e.t
	select {
	case <-e.waited:
	default:
		_ = e.cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-e.waited:
		case <-time.After(time.Minute):
			_ = e.cmd.Process.Kill()
			<-e.waited
			t.Errorf("vmre run did not exit within a minute of SIGTERM")
			return
		}
	}
	if e.err != nil {
		var exitErr *exec.ExitError
		if errors.As(e.err, &exitErr) {
			t.Errorf("vmre run exited with %v after SIGTERM, want status 0", e.err)
		}
	}
}

// line waits up to 60 s for a stdout line starting with prefix (after
// trimming spaces) and returns the rest of it, trimmed.
func (e *engine) line(prefix string) string {
	e.t.Helper()
	deadline := time.After(60 * time.Second)
	for i := 0; ; {
		e.mu.Lock()
		for ; i < len(e.lines); i++ {
			if l := strings.TrimSpace(e.lines[i]); strings.HasPrefix(l, prefix) {
				e.mu.Unlock()
				return strings.TrimSpace(strings.TrimPrefix(l, prefix))
			}
		}
		e.mu.Unlock()
		select {
		case <-e.more:
		case <-e.waited:
			e.mu.Lock()
			n := len(e.lines)
			e.mu.Unlock()
			if i == n {
				e.t.Fatalf("vmre run exited (%v) before printing %q", e.err, prefix)
			}
		case <-deadline:
			e.t.Fatalf("vmre run printed no line starting with %q within 60s", prefix)
		}
	}
}

// apiURL returns the API port's base URL, e.g. http://127.0.0.1:9660.
func (e *engine) apiURL() string {
	u := e.line("api:")
	u, _, _ = strings.Cut(u, " ")
	return strings.TrimSuffix(u, "/")
}

// apiAddr returns the API port's host:port.
func (e *engine) apiAddr() string { return strings.TrimPrefix(e.apiURL(), "http://") }

// token reads the API token from the file whose path vmre printed.
func (e *engine) token() (token, path string) {
	e.t.Helper()
	path = e.line("api token:")
	b, err := os.ReadFile(path)
	if err != nil {
		e.t.Fatalf("read the printed token file: %v", err)
	}
	return strings.TrimSpace(string(b)), path
}

// runCmd runs a command with a deadline and returns its combined output.
func runCmd(t *testing.T, timeout time.Duration, dir, name string, args ...string) (string, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), timeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, name, args...)
	cmd.Dir = dir
	cmd.WaitDelay = 5 * time.Second
	out, err := cmd.CombinedOutput()
	t.Logf("$ %s %s\n%s", name, strings.Join(args, " "), out)
	return string(out), err
}

type testLogWriter struct {
	t      *testing.T
	prefix string
	mu     sync.Mutex
	buf    []byte
}

func (w *testLogWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.buf = append(w.buf, p...)
	for {
		i := strings.IndexByte(string(w.buf), '\n')
		if i < 0 {
			break
		}
		w.t.Log(w.prefix + string(w.buf[:i]))
		w.buf = w.buf[i+1:]
	}
	return len(p), nil
}

var _ io.Writer = (*testLogWriter)(nil)
