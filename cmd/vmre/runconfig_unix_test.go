//go:build unix

package main

import (
	"bufio"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/vmre/vmre/internal/syncbuf"
)

// logEntry is one JSON line of vmre run's log.
type logEntry struct {
	Message string `json:"message"`
	VM      string `json:"vm"`
	Pid     int    `json:"pid"`
	Addr    string `json:"addr"`
	Level   string `json:"level"`
	raw     string
}

// runProc is `vmre run` as a real process (the test binary acting as vmre)
// whose log the test reads entry by entry.
type runProc struct {
	cmd     *exec.Cmd
	entries chan logEntry // closed at EOF
	log     syncbuf.Buffer
	stdout  chan string // the lines of its stdout; closed at EOF
}

// startRun starts `vmre run --listen 127.0.0.1:0 --log-format json ARGS`.
// The process is killed and reaped when the test ends.
func startRun(t *testing.T, args ...string) *runProc {
	t.Helper()
	return startRunInheriting(t, nil, args...)
}

// startRunInheriting is startRun with extra as the process's descriptors
// 3 and up, inherited without close-on-exec.
func startRunInheriting(t *testing.T, extra []*os.File, args ...string) *runProc {
	t.Helper()
	cmd := exec.Command(os.Args[0], append([]string{"run", "--listen", "127.0.0.1:0", "--log-format", "json"}, args...)...)
	cmd.ExtraFiles = extra
	return startRunCmd(t, cmd)
}

// startRunCmd starts cmd, which runs `vmre run ... --log-format json`, and
// reads its log.
func startRunCmd(t *testing.T, cmd *exec.Cmd) *runProc {
	t.Helper()
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
	p := &runProc{cmd: cmd, entries: make(chan logEntry, 4096), stdout: make(chan string, 64)}
	go func() {
		defer close(p.stdout)
		s := bufio.NewScanner(stdout)
		for s.Scan() {
			select {
			case p.stdout <- s.Text():
			default: // nobody reads this far: drop it, never block vmre
			}
		}
	}()
	go func() {
		defer close(p.entries)
		s := bufio.NewScanner(stderr)
		for s.Scan() {
			p.log.Write(append(s.Bytes(), '\n'))
			e := logEntry{raw: s.Text()}
			if json.Unmarshal(s.Bytes(), &e) == nil {
				p.entries <- e
			}
		}
	}()
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		for range p.entries {
		}
		for range p.stdout {
		}
		_ = cmd.Wait()
	})
	return p
}

// waitFor reads the log until an entry with message msg (and, if vm is not
// empty, that vm field) and returns it. It fails the test if the process
// ends first.
func (p *runProc) waitFor(t *testing.T, msg, vm string) logEntry {
	t.Helper()
	timeout := time.After(60 * time.Second) // a bound for a hung test, not a timing assertion
	for {
		select {
		case e, ok := <-p.entries:
			if !ok {
				t.Fatalf("vmre run ended before logging %q (vm %q); log:\n%s", msg, vm, p.log.String())
			}
			if e.Message == msg && (vm == "" || e.VM == vm) {
				return e
			}
		case <-timeout:
			t.Fatalf("no %q (vm %q) in the log; log:\n%s", msg, vm, p.log.String())
		}
	}
}

// exitCode reads the log to its end and returns the exit code.
func (p *runProc) exitCode(t *testing.T) int {
	t.Helper()
	timeout := time.After(60 * time.Second)
	for done := false; !done; {
		select {
		case _, ok := <-p.entries:
			done = !ok
		case <-timeout:
			t.Fatalf("vmre run did not exit; log:\n%s", p.log.String())
		}
	}
	err := p.cmd.Wait()
	var exitErr *exec.ExitError
	switch {
	case err == nil:
		return 0
	case errors.As(err, &exitErr):
		return exitErr.ExitCode()
	default:
		t.Fatal(err)
		return -1
	}
}

func (p *runProc) signal(t *testing.T, sig os.Signal) {
	t.Helper()
	if err := p.cmd.Process.Signal(sig); err != nil {
		t.Fatal(err)
	}
}

// startStubborn starts vmre run with a plugin that ignores SIGTERM, no VM
// Shutdown call and the grace period grace, and waits until the plugin has
// handshaken and sleeps: its stop can end only with SIGKILL.
func startStubborn(t *testing.T, grace string) *runProc {
	t.Helper()
	vm, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = vm.Close() })
	stubborn := writeScript(t, "trap '' TERM\n"+
		"'"+os.Args[0]+"' handshake --vm-addr "+vm.Addr().String()+" || exit 1\n"+
		"echo sleeping\n"+
		"exec sleep 600\n")
	p := startRun(t, "--vm-shutdown=false", "--graceful-timeout", grace, "--", stubborn)
	// Not "runtime running": the handshake command may still be running
	// then, and it handles SIGTERM.
	p.waitFor(t, "sleeping", "")
	return p
}

// hupThenStop sends SIGHUP, which vmre run without --config logs and
// ignores, then SIGTERM, and wants exit status 0 with the plugin stopped
// cleanly (its own exit status 0).
func (p *runProc) hupThenStop(t *testing.T) {
	t.Helper()
	p.signal(t, syscall.SIGHUP)
	p.waitFor(t, "SIGHUP ignored: there is no --config file to re-read", "")
	p.signal(t, syscall.SIGTERM)
	ended := p.waitFor(t, "runtime ended", "")
	if code := p.exitCode(t); code != exitOK {
		t.Fatalf("exit code %d, want %d; log:\n%s", code, exitOK, p.log.String())
	}
	if !strings.Contains(ended.raw, `"exit":"exit status 0"`) {
		t.Errorf("the plugin did not stop cleanly: %s", ended.raw)
	}
}

// TestRunSecondSignalStopsWaiting: a plugin that ignores SIGTERM, with a
// ten-minute grace period; after SIGTERM begins the shutdown, a second
// signal (Ctrl-C) ends the wait: vmre run says so and exits 3 at once,
// not after the grace period.
func TestRunSecondSignalStopsWaiting(t *testing.T) {
	t.Parallel()
	p := startStubborn(t, "10m")
	p.signal(t, syscall.SIGTERM)
	p.waitFor(t, "stopping", "")
	p.signal(t, syscall.SIGINT)
	// exitCode waits a minute at most: far less than the grace period.
	if code := p.exitCode(t); code != exitKilled {
		t.Fatalf("exit code %d, want %d; log:\n%s", code, exitKilled, p.log.String())
	}
	if log := p.log.String(); !strings.Contains(log, `"signal":"interrupt"`) || !strings.Contains(log, "second signal: not waiting for the runtimes to stop") {
		t.Errorf("the log does not name the second signal:\n%s", log)
	}
}

// exampleRuntime is a config entry running the built-in example VM (the
// test binary, which acts as vmre in children).
func exampleRuntime(name string, args ...string) string {
	all := append([]string{exampleVMCommand}, args...)
	return fmt.Sprintf("  - name: %s\n    path: %q\n    args: [%q]\n    graceful_timeout: 10s\n",
		name, os.Args[0], strings.Join(all, `", "`))
}

func writeConfig(t *testing.T, path, runtimes string) {
	t.Helper()
	if err := os.WriteFile(path, []byte("runtimes:\n"+runtimes), 0o600); err != nil {
		t.Fatal(err)
	}
}

// TestRunWithoutConfigIgnoresSIGHUP: without a config file a SIGHUP
// (systemctl reload, a terminal hanging up) neither kills vmre, as the
// signal's default action would, nor stops its plugin; SIGTERM then stops
// it gracefully.
func TestRunWithoutConfigIgnoresSIGHUP(t *testing.T) {
	t.Parallel()
	p := startRun(t, "--", os.Args[0], exampleVMCommand)
	p.waitFor(t, "runtime running", "")
	p.hupThenStop(t)
	if n := strings.Count(p.log.String(), `"message":"runtime running"`); n != 1 {
		t.Errorf("the runtime came up %d times, want once", n)
	}
}

// TestRunConfigReloadOnSIGHUP: vmre run --config runs the file's runtimes;
// SIGHUP applies an edited file (the untouched runtime keeps its process,
// the added one starts) and refuses a bad one, leaving everything running;
// SIGTERM then stops all with exit 0.
func TestRunConfigReloadOnSIGHUP(t *testing.T) {
	t.Parallel()
	path := filepath.Join(t.TempDir(), "vmre.yaml")
	writeConfig(t, path, exampleRuntime("one"))
	p := startRun(t, "--config", path)
	one := p.waitFor(t, "runtime running", "one")

	writeConfig(t, path, exampleRuntime("one")+exampleRuntime("two"))
	p.signal(t, syscall.SIGHUP)
	two := p.waitFor(t, "runtime running", "two")
	p.waitFor(t, "config reloaded", "")

	writeConfig(t, path, exampleRuntime("one")+"  - name: Two\n    path: /bin/true\n")
	p.signal(t, syscall.SIGHUP)
	refused := p.waitFor(t, "config reload refused; the running runtimes are unchanged", "")
	if !strings.Contains(refused.raw, `runtimes[1].name: \"Two\"`) {
		t.Errorf("refusal does not name the field: %s", refused.raw)
	}

	p.signal(t, syscall.SIGTERM)
	if code := p.exitCode(t); code != exitOK {
		t.Fatalf("exit code %d, want %d; log:\n%s", code, exitOK, p.log.String())
	}
	log := p.log.String()
	if n := strings.Count(log, `"message":"runtime running"`); n != 2 {
		t.Errorf("%d runtimes came up, want 2 (one, once; two, once); log:\n%s", n, log)
	}
	for _, pid := range []int{one.Pid, two.Pid} {
		if err := syscall.Kill(pid, 0); !errors.Is(err, syscall.ESRCH) {
			t.Errorf("plugin pid %d survived vmre run (kill 0: %v)", pid, err)
		}
	}
}

// TestRunKeepsServingAfterFailedLaunch: the shorthand's plugin crashes at
// once; vmre run keeps serving (the runtime is failed, and restartable
// through the API) until it is told to stop, then exits 0. The log says
// the launch failed once, then that no relaunch follows (the shorthand's
// policy is never).
func TestRunKeepsServingAfterFailedLaunch(t *testing.T) {
	t.Parallel()
	crash := writeScript(t, "echo 'fatal: no genesis' >&2\nexit 3\n")
	p := startRun(t, "--", crash)
	p.waitFor(t, "launch failed", "")
	verdict := p.waitFor(t, "runtime failed; not relaunching", "")
	if !strings.Contains(verdict.raw, `"reason":"restart policy never"`) || !strings.Contains(verdict.raw, "fatal: no genesis") {
		t.Errorf("verdict without its reason or the failure: %s", verdict.raw)
	}
	p.signal(t, syscall.SIGTERM)
	if code := p.exitCode(t); code != exitOK {
		t.Fatalf("exit code %d, want %d (still serving until SIGTERM); log:\n%s", code, exitOK, p.log.String())
	}
	if n := strings.Count(p.log.String(), `"message":"launch failed"`); n != 1 {
		t.Errorf("the failed launch was logged %d times, want once; log:\n%s", n, p.log.String())
	}
}

// TestRunExitOnFailure: with --exit-on-failure a runtime that fails ends
// vmre run with exit 1: from the shorthand (never restarted), from a
// config file whose runtime is not restarted, and from one whose runtime
// is restarted until its policy gives up.
func TestRunExitOnFailure(t *testing.T) {
	t.Parallel()
	crash := writeScript(t, "exit 3\n")
	dir := t.TempDir()
	never := filepath.Join(dir, "never.yaml")
	writeConfig(t, never, exampleRuntime("fine")+fmt.Sprintf("  - name: crash\n    path: %q\n    restart: {policy: never}\n", crash))
	retried := filepath.Join(dir, "retried.yaml")
	writeConfig(t, retried, exampleRuntime("fine")+fmt.Sprintf("  - name: crash\n    path: %q\n"+
		"    restart: {policy: on-failure, initial_backoff: 20ms, max_backoff: 20ms, max_restarts: 2, window: 10m}\n", crash))
	tests := []struct {
		name     string
		args     []string
		restarts int // "runtime relaunch scheduled" lines before the exit
	}{
		{"shorthand", []string{"--exit-on-failure", "--", crash}, 0},
		{"config, restart never", []string{"--exit-on-failure", "--config", never}, 0},
		{"config, on-failure gives up", []string{"--exit-on-failure", "--config", retried}, 2},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			p := startRun(t, tt.args...)
			if code := p.exitCode(t); code != exitFailure {
				t.Fatalf("exit code %d, want %d; log:\n%s", code, exitFailure, p.log.String())
			}
			log := p.log.String()
			if !strings.Contains(log, "runtime failed; exiting (--exit-on-failure)") {
				t.Errorf("the log does not say why vmre run exited:\n%s", log)
			}
			if n := strings.Count(log, `"message":"runtime relaunch scheduled"`); n != tt.restarts {
				t.Errorf("%d relaunches before the exit, want %d; log:\n%s", n, tt.restarts, log)
			}
		})
	}
}

// TestRunExitsNonZeroWhenItKills: a plugin that ignores SIGTERM is killed
// after its grace period at shutdown, and vmre run says so in its exit
// code.
func TestRunExitsNonZeroWhenItKills(t *testing.T) {
	t.Parallel()
	p := startStubborn(t, "200ms")
	p.signal(t, syscall.SIGTERM)
	if code := p.exitCode(t); code != exitKilled {
		t.Fatalf("exit code %d, want %d; log:\n%s", code, exitKilled, p.log.String())
	}
	if !strings.Contains(p.log.String(), "runtimes had to be killed during shutdown") {
		t.Errorf("the log does not name the kill:\n%s", p.log.String())
	}
}
