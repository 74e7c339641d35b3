//go:build linux

package subprocess_test

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"math"
	"net"
	"os"
	"os/exec"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/rs/zerolog"
	"github.com/vmre/vmre"
	"github.com/vmre/vmre/internal/syncbuf"
	"github.com/vmre/vmre/subprocess"
	"golang.org/x/sys/unix"
)

func mustBootstrap(t *testing.T, mode string, cfg *subprocess.Config, env ...string) (subprocess.Status, *subprocess.Process) {
	t.Helper()
	p, err := subprocess.Bootstrap(t.Context(), childCmd(t, mode, env...), cfg)
	if err != nil {
		t.Fatalf("Bootstrap(%s): %v", mode, err)
	}
	t.Cleanup(func() { p.Stop(context.Background()) })
	return p.Status(), p
}

func TestBootstrapSuccess(t *testing.T) {
	t.Parallel()
	out := newCollector()
	var logs syncbuf.Buffer
	cfg := &subprocess.Config{
		Name:     "testvm",
		Log:      zerolog.New(&logs).Level(zerolog.DebugLevel),
		OnOutput: out.add,
	}
	cmd := childCmd(t, "serve")
	before := time.Now()
	p, err := subprocess.Bootstrap(t.Context(), cmd, cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { p.Stop(context.Background()) })
	st := p.Status()

	if st.Pid != cmd.Process.Pid || p.Pid() != st.Pid {
		t.Errorf("pid: status %d, process %d, cmd %d", st.Pid, p.Pid(), cmd.Process.Pid)
	}
	if st.ProtocolVersion != vmre.ProtocolVersion {
		t.Errorf("ProtocolVersion = %d", st.ProtocolVersion)
	}
	if st.StartedAt.Before(before) || st.HandshakeDuration <= 0 || st.HandshakeDuration > time.Since(before) {
		t.Errorf("StartedAt %v, HandshakeDuration %v", st.StartedAt, st.HandshakeDuration)
	}
	vmAddr := out.waitFor(t, func(l outLine) bool { return strings.HasPrefix(l.Text, "vm-addr ") })
	if want := "vm-addr " + st.Addr; vmAddr.Text != want {
		t.Errorf("plugin announced %q, status has %q", vmAddr.Text, st.Addr)
	}

	// Every configured variable carries the engine address.
	var engineAddr string
	for _, key := range vmre.EngineAddressKeys() {
		l := out.waitFor(t, func(l outLine) bool { return strings.HasPrefix(l.Text, "env "+key+"=") })
		addr := strings.TrimPrefix(l.Text, "env "+key+"=")
		if engineAddr == "" {
			engineAddr = addr
		}
		if addr == "" || addr != engineAddr {
			t.Errorf("%s = %q, want the engine address %q", key, addr, engineAddr)
		}
	}
	// The listener is closed once Bootstrap has returned.
	if conn, err := net.Dial("tcp", engineAddr); err == nil {
		conn.Close()
		t.Errorf("handshake listener %s still accepts connections", engineAddr)
	}
	out.waitFor(t, textIs("token-len 26"))

	p.Stop(t.Context())
	out.waitFor(t, textIs("got sigterm"))
	if es := p.ExitStatus(); es.Code != 0 || es.Signal != "" || p.Err() != nil {
		t.Errorf("ExitStatus = %+v, want a clean exit", es)
	}

	var token string
	for _, kv := range cmd.Env {
		if v, ok := strings.CutPrefix(kv, vmre.HandshakeTokenKey+"="); ok {
			token = v
		}
	}
	log := logs.String()
	if token == "" || strings.Contains(log, token) {
		t.Errorf("token %q missing from the environment or present in the log", token)
	}
	for _, want := range []string{`"vm":"testvm"`, `"pid":` + strconv.Itoa(st.Pid), `"stream":"stdout"`, `"message":"got sigterm"`, `"message":"vm handshake complete"`} {
		if !strings.Contains(log, want) {
			t.Errorf("log lacks %s:\n%s", want, log)
		}
	}
}

func TestBootstrapCrashBeforeHandshake(t *testing.T) {
	t.Parallel()
	cmd := childCmd(t, "crash")
	const handshakeTimeout = time.Minute
	start := time.Now()
	p, err := subprocess.Bootstrap(t.Context(), cmd, &subprocess.Config{HandshakeTimeout: handshakeTimeout})
	elapsed := time.Since(start)
	if err == nil {
		p.Stop(t.Context())
		t.Fatal("Bootstrap succeeded")
	}
	// Not a speed check (a loaded machine may take seconds to start the
	// child): the crash must end the wait, not the handshake timeout.
	if elapsed > handshakeTimeout/2 {
		t.Errorf("the crash was reported after %v, as if waiting for the %v handshake timeout", elapsed, handshakeTimeout)
	}
	if !errors.Is(err, vmre.ErrHandshakeFailed) || !errors.Is(err, vmre.ErrProcessExited) {
		t.Errorf("err = %v, want ErrHandshakeFailed and ErrProcessExited", err)
	}
	var exitErr *vmre.ExitError
	if !errors.As(err, &exitErr) {
		t.Fatalf("err = %v, want a *vmre.ExitError", err)
	}
	if exitErr.Code != 3 || exitErr.Signal != "" || exitErr.Pid != cmd.Process.Pid {
		t.Errorf("ExitError = %+v", exitErr)
	}
	if n := len(exitErr.Tail); n != subprocess.DefaultTailLines {
		t.Errorf("stderr tail has %d lines, want %d", n, subprocess.DefaultTailLines)
	}
	if last := exitErr.Tail[len(exitErr.Tail)-1]; last != (vmre.TailLine{Stream: "stderr", Text: "boom: out of cheese"}) {
		t.Errorf("last stderr line %q", last)
	}
	for _, want := range []string{"handshake failed: process exited: exit status 3", "boom: out of cheese"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q lacks %q", err, want)
		}
	}
	if !gone(cmd.Process.Pid) {
		t.Errorf("process %d was not reaped", cmd.Process.Pid)
	}
}

func TestBootstrapExitZeroBeforeHandshake(t *testing.T) {
	t.Parallel()
	_, err := subprocess.Bootstrap(t.Context(), childCmd(t, "exit0"), nil)
	var exitErr *vmre.ExitError
	if !errors.As(err, &exitErr) || exitErr.Code != 0 || !errors.Is(err, vmre.ErrHandshakeFailed) {
		t.Fatalf("err = %v, want a handshake failure with exit status 0", err)
	}
}

// TestBootstrapTimeout: a plugin that never handshakes is killed when the
// configured timeout ends, and the error carries what it printed (it says
// "hanging" on stdout as it starts). The timeout is longer than the
// default, so that the lower bound alone tells the two apart: a timer
// never fires early, while an upper bound near the timeout is missed by a
// loaded machine.
func TestBootstrapTimeout(t *testing.T) {
	t.Parallel()
	cmd := childCmd(t, "hang")
	const timeout = vmre.DefaultHandshakeTimeout + 2*time.Second
	start := time.Now()
	_, err := subprocess.Bootstrap(t.Context(), cmd, &subprocess.Config{HandshakeTimeout: timeout})
	elapsed := time.Since(start)
	const want = "handshake failed: timeout; output: stdout: hanging"
	if err == nil || err.Error() != want {
		t.Fatalf("err = %v, want %s", err, want)
	}
	var timeoutErr *vmre.TimeoutError
	if !errors.As(err, &timeoutErr) || len(timeoutErr.Tail) != 1 || timeoutErr.Tail[0] != (vmre.TailLine{Stream: "stdout", Text: "hanging"}) {
		t.Errorf("err = %#v, want a *vmre.TimeoutError with the line", err)
	}
	for _, target := range []error{vmre.ErrHandshakeFailed, vmre.ErrHandshakeTimeout, vmre.ErrProcessNotFound} {
		if !errors.Is(err, target) {
			t.Errorf("err does not match %v", target)
		}
	}
	if elapsed < timeout {
		t.Errorf("Bootstrap returned after %v, before its %v timeout", elapsed, timeout)
	}
	if !gone(cmd.Process.Pid) {
		t.Errorf("process %d was not reaped", cmd.Process.Pid)
	}
}

func TestBootstrapVersionMismatch(t *testing.T) {
	t.Parallel()
	cmd := childCmd(t, "bad-version")
	_, err := subprocess.Bootstrap(t.Context(), cmd, nil)
	const want = "handshake failed: protocol version mismatch engine: 42 vm: 41"
	if err == nil || err.Error() != want {
		t.Fatalf("err = %v, want %q", err, want)
	}
	var mismatch *vmre.VersionMismatchError
	if !errors.Is(err, vmre.ErrHandshakeFailed) || !errors.As(err, &mismatch) || mismatch.Got != 41 {
		t.Errorf("err = %v does not classify as a version mismatch", err)
	}
	if !gone(cmd.Process.Pid) {
		t.Errorf("process %d was not reaped", cmd.Process.Pid)
	}
}

func TestBootstrapAcceptsAnyConfiguredVersion(t *testing.T) {
	t.Parallel()
	st, _ := mustBootstrap(t, "serve", &subprocess.Config{AcceptedVersions: []uint32{46, 42}}, versionEnv+"=46")
	if st.ProtocolVersion != 46 {
		t.Errorf("ProtocolVersion = %d, want 46", st.ProtocolVersion)
	}
}

func TestBootstrapContextCanceled(t *testing.T) {
	t.Parallel()
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	cmd := childCmd(t, "hang")
	cfg := &subprocess.Config{OnOutput: func(pl *subprocess.Line) {
		l := asOut(pl)
		if l.Text == "hanging" {
			cancel()
		}
	}}
	_, err := subprocess.Bootstrap(ctx, cmd, cfg)
	if !errors.Is(err, context.Canceled) || !errors.Is(err, vmre.ErrHandshakeFailed) {
		t.Fatalf("err = %v, want context.Canceled", err)
	}
	if !gone(cmd.Process.Pid) {
		t.Errorf("process %d was not reaped", cmd.Process.Pid)
	}
}

func TestBootstrapStartFails(t *testing.T) {
	t.Parallel()
	_, err := subprocess.Bootstrap(t.Context(), subprocess.NewCmd(t.TempDir()+"/no-such-plugin"), nil)
	if !errors.Is(err, vmre.ErrHandshakeFailed) || !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("err = %v, want ErrHandshakeFailed wrapping a missing file", err)
	}
}

func TestBootstrapInvalidConfig(t *testing.T) {
	t.Parallel()
	started := childCmd(t, "exit0")
	if err := started.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = started.Wait() })
	withStdout := childCmd(t, "exit0")
	withStdout.Stdout = os.Stdout
	withReader := childCmd(t, "exit0")
	withReader.Stdin = strings.NewReader("input")
	tests := []struct {
		name string
		cmd  func() *exec.Cmd
		cfg  *subprocess.Config
	}{
		{"nil cmd", func() *exec.Cmd { return nil }, nil},
		{"started cmd", func() *exec.Cmd { return started }, nil},
		{"stdout set", func() *exec.Cmd { return withStdout }, nil},
		{"stdin a reader", func() *exec.Cmd { return withReader }, nil},
		{"empty accepted versions", nil, &subprocess.Config{AcceptedVersions: []uint32{}}},
		{"version 0", nil, &subprocess.Config{AcceptedVersions: []uint32{0}}},
		{"negative handshake timeout", nil, &subprocess.Config{HandshakeTimeout: -time.Second}},
		{"negative graceful timeout", nil, &subprocess.Config{GracefulTimeout: -time.Second}},
		{"empty env vars", nil, &subprocess.Config{EnvVars: []string{}}},
		{"bad env var", nil, &subprocess.Config{EnvVars: []string{"A=B"}}},
		{"negative max line", nil, &subprocess.Config{MaxLineBytes: -1}},
		{"negative tail", nil, &subprocess.Config{TailLines: -1}},
		{"huge max line", nil, &subprocess.Config{MaxLineBytes: 1 << 30}},
		// Not a panic (makeslice) with the pipes and listener left open.
		{"huge tail", nil, &subprocess.Config{TailLines: math.MaxInt}},
		{"tail past the bound", nil, &subprocess.Config{TailLines: subprocess.MaxTailLines + 1}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cmd := childCmd(t, "exit0")
			if tt.cmd != nil {
				cmd = tt.cmd()
			}
			if tt.cfg != nil {
				if err := tt.cfg.Validate(); !errors.Is(err, vmre.ErrInvalidConfig) {
					t.Errorf("Validate() = %v, want ErrInvalidConfig", err)
				}
			}
			p, err := subprocess.Bootstrap(t.Context(), cmd, tt.cfg)
			if !errors.Is(err, vmre.ErrInvalidConfig) {
				t.Errorf("err = %v, want ErrInvalidConfig", err)
			}
			if p != nil {
				t.Error("a Stopper came with the error")
			}
		})
	}
	if err := (&subprocess.Config{TailLines: subprocess.MaxTailLines}).Validate(); err != nil {
		t.Errorf("TailLines at its bound: %v", err)
	}
}

func TestBootstrapDoesNotModifyConfig(t *testing.T) {
	t.Parallel()
	versions := []uint32{42}
	envVars := []string{vmre.EngineAddressKey}
	cfg := &subprocess.Config{AcceptedVersions: versions, EnvVars: envVars}
	want := *cfg
	mustBootstrap(t, "serve", cfg)
	if cfg.Name != want.Name || cfg.HandshakeTimeout != 0 || cfg.GracefulTimeout != 0 || cfg.MaxLineBytes != 0 ||
		!slices.Equal(cfg.AcceptedVersions, versions) || !slices.Equal(cfg.EnvVars, envVars) {
		t.Errorf("config modified: %+v", cfg)
	}
}

// TestStopIgnoringSIGTERM: a plugin that ignores SIGTERM is killed when
// the configured grace period ends. The grace period is longer than the
// default, so that the lower bound alone tells the two apart; how close to
// it Stop returns is the bench's to measure, as a loaded machine misses
// any tight upper bound.
func TestStopIgnoringSIGTERM(t *testing.T) {
	t.Parallel()
	const grace = vmre.DefaultGracefulTimeout + 2*time.Second
	_, p := mustBootstrap(t, "ignore-sigterm", &subprocess.Config{GracefulTimeout: grace})
	start := time.Now()
	p.Stop(t.Context())
	if elapsed := time.Since(start); elapsed < grace {
		t.Errorf("Stop took %v, less than the %v grace period", elapsed, grace)
	}
	select {
	case <-p.Done():
	default:
		t.Fatal("Stop returned before Done")
	}
	es := p.ExitStatus()
	var exitErr *vmre.ExitError
	if es.Signal != "killed" || es.Code != -1 || !es.ForcedKill || !errors.As(p.Err(), &exitErr) || !exitErr.ForcedKill {
		t.Errorf("ExitStatus = %+v, want killed by force", es)
	}
	if !gone(p.Pid()) {
		t.Errorf("process %d was not reaped", p.Pid())
	}
}

func TestStopKillsGrandchild(t *testing.T) {
	t.Parallel()
	out := newCollector()
	const graceful = time.Minute
	_, p := mustBootstrap(t, "fork-grandchild", &subprocess.Config{OnOutput: out.add, GracefulTimeout: graceful})
	gc := out.waitForNumber(t, "grandchild=")
	fds := openPidfds(t, gc)

	start := time.Now()
	p.Stop(t.Context())
	// The plugin exits on SIGTERM at once; its grandchild ignores SIGTERM
	// and holds stderr open, and must not hold up the stop until the
	// graceful timeout. Half of it: a loaded machine is slow, not that slow.
	if elapsed := time.Since(start); elapsed > graceful/2 {
		t.Errorf("Stop took %v, as if waiting for the %v graceful timeout", elapsed, graceful)
	}
	if es := p.ExitStatus(); es.Code != 0 {
		t.Errorf("plugin ExitStatus = %+v, want exit 0 after SIGTERM", es)
	}
	if !gone(p.Pid()) {
		t.Errorf("plugin %d still exists", p.Pid())
	}
	if alive := fds.waitExited(subprocess.ExitBound); len(alive) > 0 {
		t.Errorf("grandchild %d survived Stop", gc)
	}
}

// TestEscapedGrandchildDoesNotHoldDone: a grandchild that left the
// plugin's process group keeps its stdout open; Done must still close,
// shortly after the plugin exits.
func TestEscapedGrandchildDoesNotHoldDone(t *testing.T) {
	t.Parallel()
	out := newCollector()
	_, p := mustBootstrap(t, "escape", &subprocess.Config{OnOutput: out.add})
	gc := out.waitForNumber(t, "escaped=")
	fds := openPidfds(t, gc)
	select {
	case <-p.Done():
	case <-time.After(subprocess.ExitBound):
		t.Fatal("Done did not close while an escaped grandchild holds stdout")
	}
	if alive := fds.waitExited(time.Millisecond); len(alive) != 1 {
		t.Error("the escaped grandchild was killed; this test no longer covers the drain timeout")
	}
}

func TestPluginExitingAfterHandshake(t *testing.T) {
	t.Parallel()
	_, p := mustBootstrap(t, "exit-after", nil)
	<-p.Done()
	es := p.ExitStatus()
	var exitErr *vmre.ExitError
	if es.Code != 5 || !errors.As(p.Err(), &exitErr) || !slices.Contains(streamTail(exitErr, subprocess.StreamStderr), "leaving after the handshake") {
		t.Errorf("ExitStatus = %+v", es)
	}
	p.Stop(t.Context()) // a no-op now
}

func TestStopIsIdempotentAndConcurrent(t *testing.T) {
	t.Parallel()
	_, p := mustBootstrap(t, "serve", nil)
	var wg sync.WaitGroup
	for range 10 {
		wg.Go(func() { p.Stop(t.Context()) })
	}
	wg.Wait()
	p.Stop(t.Context())
	if es := p.ExitStatus(); es.Code != 0 || es.ForcedKill || p.Err() != nil {
		t.Errorf("ExitStatus = %+v, want a clean exit on SIGTERM", es)
	}
}

// TestStopRightAfterHandshake stops plugins the moment Bootstrap returns.
// Bootstrap returns once the engine has decided the handshake, when the
// plugin's client may not have read the answer yet; these plugins stop on
// SIGTERM even inside their handshake, and then exit 1. Stop must let the
// answer reach them first, so every one exits 0 on the SIGTERM that
// follows.
func TestStopRightAfterHandshake(t *testing.T) {
	t.Parallel()
	stopRightAfterHandshake(t, "term-handshake", 8)
}

// stopRightAfterHandshake launches n plugins of the child mode at once,
// stops each the moment its Bootstrap returns, and requires each to exit
// 0 on its SIGTERM.
func stopRightAfterHandshake(t *testing.T, mode string, n int) {
	t.Helper()
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() {
			p, err := subprocess.Bootstrap(t.Context(), childCmd(t, mode), nil)
			if err != nil {
				t.Errorf("plugin %d: Bootstrap: %v", i, err)
				return
			}
			p.Stop(t.Context())
			if es := p.ExitStatus(); es.Code != 0 || es.ForcedKill || p.Err() != nil {
				t.Errorf("plugin %d: ExitStatus = %+v, Err = %v; want exit 0 on SIGTERM after its handshake", i, es, p.Err())
			}
		})
	}
	wg.Wait()
}

// TestHandshakeConnectionWithoutSettingsEnds pins a limit the engine
// cannot configure: net/http's HTTP/2 server ends a connection whose
// first frame (the client's SETTINGS) it has not read within 2 s of the
// preface. A plugin whose client is starved between the two, or an engine
// starved for that long between taking the connection and reading the
// frame, loses that connection; the plugin's Initialize on it is reset.
func TestHandshakeConnectionWithoutSettingsEnds(t *testing.T) {
	t.Parallel()
	out := newCollector()
	var logs syncbuf.Buffer
	cfg := &subprocess.Config{OnOutput: out.add, Log: zerolog.New(&logs), HandshakeTimeout: time.Minute}
	mustBootstrap(t, "preface-only", cfg)
	l := out.waitFor(t, func(l outLine) bool { return strings.HasPrefix(l.Text, "ended after ") })
	t.Log(l.Text)
	d, err := time.ParseDuration(strings.TrimPrefix(l.Text[:strings.Index(l.Text, ":")], "ended after "))
	if err != nil {
		t.Fatal(err)
	}
	if d < 2*time.Second {
		t.Errorf("the server ended the connection after %v, before its 2 s wait for SETTINGS", d)
	}
	if !strings.Contains(logs.String(), "timeout waiting for SETTINGS frames") {
		t.Errorf("engine log does not name the SETTINGS timeout:\n%s", logs.String())
	}
}

// TestStopIsNotDelayedByHandshakeServer: a connection to the handshake
// server with a request half sent, held open by a process outside the
// plugin's group, keeps the server's graceful shutdown going for as long
// as it may last (the handshake timeout). Stop must not wait for it: once the
// plugin is reaped the server is closed hard, and its goroutines end
// (TestMain checks for leaks).
func TestStopIsNotDelayedByHandshakeServer(t *testing.T) {
	t.Parallel()
	out := newCollector()
	// The server's shutdown may last the handshake timeout: a long one, so
	// that waiting for it cannot pass for a slow machine.
	const handshakeTimeout = time.Minute
	_, p := mustBootstrap(t, "hold-conn", &subprocess.Config{OnOutput: out.add, HandshakeTimeout: handshakeTimeout})
	holder := out.waitForNumber(t, "holder=")
	openPidfds(t, holder) // killed at cleanup
	start := time.Now()
	p.Stop(t.Context())
	// Half the server's shutdown timeout: far above a stop's few
	// milliseconds even on a loaded machine, far below what waiting for
	// the server costs.
	if elapsed := time.Since(start); elapsed > handshakeTimeout/2 {
		t.Errorf("Stop took %v: it waited for the handshake server's shutdown", elapsed)
	}
	if es := p.ExitStatus(); es.Code != 0 || p.Err() != nil {
		t.Errorf("ExitStatus = %+v, want a graceful exit", es)
	}
}

func TestStopReturnsWhenContextEnds(t *testing.T) {
	t.Parallel()
	// The grace is what may pass between Stop's return and the check:
	// long enough for a loaded machine, short for the cleanup's Stop.
	_, p := mustBootstrap(t, "ignore-sigterm", &subprocess.Config{GracefulTimeout: 10 * time.Second})
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	p.Stop(ctx)
	select {
	case <-p.Done():
		t.Fatal("process exited before its grace period")
	default:
	}
}

func TestStdoutClosedEarlyDoesNotKill(t *testing.T) {
	t.Parallel()
	out := newCollector()
	_, p := mustBootstrap(t, "close-stdout", &subprocess.Config{OnOutput: out.add})
	out.waitFor(t, textIs("stdout closed, still here"))
	select {
	case <-p.Done():
		t.Fatal("the plugin died after closing its stdout")
	default:
	}
	p.Stop(t.Context())
	out.waitFor(t, textIs("got sigterm"))
	if es := p.ExitStatus(); es.Code != 0 || es.Signal != "" {
		t.Errorf("ExitStatus = %+v, want a graceful exit", es)
	}
}

func TestSecondInitializeRefused(t *testing.T) {
	t.Parallel()
	out := newCollector()
	_, p := mustBootstrap(t, "double-init", &subprocess.Config{OnOutput: out.add})
	l := out.waitFor(t, func(l outLine) bool { return strings.HasPrefix(l.Text, "second initialize: ") })
	if l.Text == "second initialize: <nil>" {
		t.Errorf("a second Initialize succeeded")
	}
	p.Stop(t.Context())
}

func TestStdoutFlood(t *testing.T) {
	t.Parallel()
	const (
		lines = 200_000
		size  = 1000 // bytes per line, newline included: 200 MB in all
	)
	var count, bad int
	cfg := &subprocess.Config{
		Log: zerolog.New(discard{}),
		OnOutput: func(pl *subprocess.Line) {
			l := asOut(pl)
			if l.Stream != subprocess.StreamStdout {
				return
			}
			count++
			if len(l.Text) != size-1 || l.Partial {
				bad++
			}
		},
		HandshakeTimeout: 30 * time.Second,
	}
	_, p := mustBootstrap(t, "flood", cfg, fmt.Sprintf("%s=%d,%d", floodEnv, lines, size))
	// No deadline: 200 MB through the bridge under -race has taken over
	// 90 s on a loaded machine; a deadlock is the test binary's -timeout
	// to report, with every goroutine's stack.
	<-p.Done()
	if es := p.ExitStatus(); es.Code != 0 {
		t.Fatalf("ExitStatus = %+v", es)
	}
	if count != lines || bad != 0 {
		t.Errorf("got %d lines (%d malformed), want %d", count, bad, lines)
	}
}

type discard struct{}

func (discard) Write(p []byte) (int, error) { return len(p), nil }

func TestLongLineIsChunked(t *testing.T) {
	t.Parallel()
	const maxLine = 64 << 10
	var chunks, total, partial, oversize, emptyTail int
	lastPartial := true
	cfg := &subprocess.Config{
		MaxLineBytes: maxLine,
		OnOutput: func(pl *subprocess.Line) {
			l := asOut(pl)
			if l.Stream != subprocess.StreamStdout {
				return
			}
			chunks++
			total += len(l.Text)
			if len(l.Text) > maxLine {
				oversize++
			}
			if l.Partial {
				partial++
			}
			if len(l.Text) == 0 {
				emptyTail++
			}
			lastPartial = l.Partial
		},
	}
	_, p := mustBootstrap(t, "long-line", cfg)
	<-p.Done()
	wantChunks := (longLineBytes + maxLine - 1) / maxLine
	if total != longLineBytes || chunks != wantChunks || partial != wantChunks-1 || lastPartial || oversize > 0 || emptyTail > 0 {
		t.Errorf("got %d bytes in %d chunks (%d partial, %d oversize, %d empty, last partial %v); want %d bytes in %d chunks",
			total, chunks, partial, oversize, emptyTail, lastPartial, longLineBytes, wantChunks)
	}
}

// TestPluginSurvivesLaunchingThreadExit launches a plugin from a goroutine
// locked to its OS thread that then returns, which ends the thread. The
// parent-death signal fires when the forking thread exits
// (golang/go#27505); the plugin must survive because Bootstrap forks from
// its own never-ending thread.
func TestPluginSurvivesLaunchingThreadExit(t *testing.T) {
	t.Parallel()
	type result struct {
		p   *subprocess.Process
		tid int
		err error
	}
	cmd := childCmd(t, "serve")
	res := make(chan result, 1)
	var launch func()
	launch = func() {
		runtime.LockOSThread() // never unlocked: the thread ends with this goroutine
		if unix.Gettid() == os.Getpid() {
			// The main thread never exits (Go parks it instead); try
			// again from another thread.
			runtime.UnlockOSThread()
			go launch()
			return
		}
		p, err := subprocess.Bootstrap(t.Context(), cmd, nil)
		r := result{tid: unix.Gettid(), err: err}
		if err == nil {
			r.p = p
		}
		res <- r
	}
	go launch()
	r := <-res
	if r.err != nil {
		t.Fatal(r.err)
	}
	t.Cleanup(func() { r.p.Stop(context.Background()) })

	const pidfdThread = unix.O_EXCL // PIDFD_THREAD, Linux 6.9
	fd, err := unix.PidfdOpen(r.tid, pidfdThread)
	switch {
	case errors.Is(err, unix.EINVAL):
		t.Skip("no PIDFD_THREAD: cannot tell when the launching thread has exited")
	case err == nil:
		defer unix.Close(fd)
		if alive := (pidfds{r.tid: fd}).waitExited(subprocess.ExitBound); len(alive) > 0 {
			t.Fatal("the launching thread did not exit")
		}
	case !errors.Is(err, unix.ESRCH): // ESRCH: already gone
		t.Fatal(err)
	}
	// The thread is gone, so any parent-death signal is already pending.
	r.p.Stop(t.Context())
	if es := r.p.ExitStatus(); es.Signal != "" || es.Code != 0 {
		t.Errorf("plugin ExitStatus = %+v: it died with its launching thread", es)
	}
}

// TestEngineKilled SIGKILLs an engine (the test binary in "engine" mode)
// running a plugin that ignores SIGTERM and a plugin with a grandchild
// that ignores SIGTERM: all three must be gone (within
// subprocess.ExitBound).
func TestEngineKilled(t *testing.T) {
	t.Parallel()
	engine := childCmd(t, "engine")
	engine.SysProcAttr = nil // the test stands in for whoever kills it
	stdout, err := engine.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	engine.Stderr = os.Stderr
	if err := engine.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = engine.Process.Kill(); _ = engine.Wait() })

	var pids []int
	sc := bufio.NewScanner(stdout)
	for sc.Scan() && sc.Text() != "ready" {
		pid, err := strconv.Atoi(strings.TrimPrefix(sc.Text(), "pid "))
		if err != nil {
			t.Fatalf("engine said %q", sc.Text())
		}
		pids = append(pids, pid)
	}
	if len(pids) != 3 {
		t.Fatalf("engine reported pids %v, want 3", pids)
	}
	fds := openPidfds(t, pids...)

	if err := engine.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	_ = engine.Wait()
	if alive := fds.waitExited(subprocess.ExitBound); len(alive) > 0 {
		t.Errorf("processes %v (of %v) survived the engine's SIGKILL by %v", alive, pids, subprocess.ExitBound)
	}
}

// TestVersionMismatchNotHeldByConnection: a plugin that leaves a request
// half sent on a second connection (held by a process outside its group)
// and then handshakes with a wrong version. Once the mismatch is
// answered nothing is left to answer, so Bootstrap must not wait for the
// server's graceful shutdown, which lasts up to HandshakeTimeout (an hour
// here).
func TestVersionMismatchNotHeldByConnection(t *testing.T) {
	t.Parallel()
	versionMismatchHeld(t, false)
}

// TestVersionMismatchReturnsWhenContextEnds: the same, with the caller's
// context cancelled once the plugin has its answer, and the wait for the
// server stretched to an hour: Bootstrap must return because ctx ended.
func TestVersionMismatchReturnsWhenContextEnds(t *testing.T) {
	t.Parallel()
	versionMismatchHeld(t, true)
}

func versionMismatchHeld(t *testing.T, cancelCtx bool) {
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	holder := make(chan string, 1)
	cfg := &subprocess.Config{
		HandshakeTimeout: time.Hour,
		OnOutput: func(pl *subprocess.Line) {
			l := asOut(pl)
			if pid, ok := strings.CutPrefix(l.Text, "holder="); ok {
				holder <- pid
			}
			// The plugin has its answer: Bootstrap knows the outcome.
			if cancelCtx && strings.HasPrefix(l.Text, "handshake:") {
				cancel()
			}
		},
	}
	if cancelCtx {
		// Only ctx can end the wait for the answer then.
		subprocess.SetFailedAnswerWait(cfg, time.Hour)
	}
	cmd := childCmd(t, "hold-conn", versionEnv+"=41")
	errc := make(chan error, 1)
	go func() {
		_, err := subprocess.Bootstrap(ctx, cmd, cfg)
		errc <- err
	}()
	pid, err := strconv.Atoi(<-holder)
	if err != nil {
		t.Fatal(err)
	}
	openPidfds(t, pid) // killed at cleanup
	// Not a measurement: a deadline far beyond a correct run's few
	// milliseconds, far below the hour the server would take.
	deadline := time.NewTimer(time.Minute)
	defer deadline.Stop()
	select {
	case err = <-errc:
	case <-deadline.C:
		t.Fatal("Bootstrap still waits for the handshake server")
	}
	if !errors.Is(err, vmre.ErrHandshakeFailed) ||
		!errors.Is(err, vmre.ErrProtocolVersionMismatch) && !(cancelCtx && errors.Is(err, context.Canceled)) {
		t.Errorf("err = %v, want a version mismatch", err)
	}
	if !gone(cmd.Process.Pid) {
		t.Errorf("process %d was not reaped", cmd.Process.Pid)
	}
}

// TestIdlePluginHasNoSupervisor: a running plugin costs no goroutine
// waiting for its exit (the exit waiter of all plugins waits for it), and
// it is still reaped once it has exited.
func TestIdlePluginHasNoSupervisor(t *testing.T) {
	t.Parallel()
	p, err := subprocess.Bootstrap(t.Context(), childCmd(t, "serve"), nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { p.Stop(context.Background()) })
	buf := make([]byte, 1<<20)
	for {
		n := runtime.Stack(buf, true)
		if n < len(buf) {
			buf = buf[:n]
			break
		}
		buf = make([]byte, 2*len(buf))
	}
	// Only a plugin's own supervise goroutine, when no exit waiter can be
	// had, blocks in waitExited; this one, and those of the tests
	// running beside it, are waited for by the exit waiter. The
	// watchdog's waiter waits there for its shell, not for a plugin.
	for g := range strings.SplitSeq(string(buf), "\n\n") {
		if strings.Contains(g, "subprocess.waitExited") && !strings.Contains(g, subprocess.WatchdogFunc) {
			t.Errorf("a goroutine waits for a running plugin's exit:\n%s", g)
		}
	}
	p.Stop(t.Context())
	select {
	case <-p.Done():
	default:
		t.Fatal("Stop returned before Done closed")
	}
	if p.ExitStatus().Code != 0 || p.Err() != nil {
		t.Errorf("stopped plugin: status %+v, err %v", p.ExitStatus(), p.Err())
	}
}

// TestBootstrapSharedDevNull: a plugin started with a nil Stdin reads
// /dev/null, from one file the engine opened once for all its plugins and
// keeps open, not one opened and closed at every start.
func TestBootstrapSharedDevNull(t *testing.T) {
	t.Parallel()
	devNull, err := os.Stat(os.DevNull)
	if err != nil {
		t.Fatal(err)
	}
	var stdins []*os.File
	for range 2 {
		cmd := childCmd(t, "serve")
		p, err := subprocess.Bootstrap(t.Context(), cmd, nil)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { p.Stop(context.Background()) })
		f, ok := cmd.Stdin.(*os.File)
		if !ok {
			t.Fatalf("cmd.Stdin = %T, want the shared *os.File", cmd.Stdin)
		}
		stdins = append(stdins, f)
		if got, err := f.Stat(); err != nil || !os.SameFile(got, devNull) {
			t.Fatalf("cmd.Stdin is not %s: %v", os.DevNull, err)
		}
		if got, err := os.Stat(fmt.Sprintf("/proc/%d/fd/0", p.Pid())); err != nil || !os.SameFile(got, devNull) {
			t.Errorf("the plugin's standard input is not %s: %v", os.DevNull, err)
		}
	}
	if stdins[0] != stdins[1] {
		t.Error("each launch got a /dev/null of its own")
	}
	p, err := subprocess.Bootstrap(t.Context(), childCmd(t, "serve"), nil)
	if err != nil {
		t.Fatal(err)
	}
	p.Stop(t.Context())
	if _, err := stdins[0].Stat(); err != nil {
		t.Errorf("the shared /dev/null was closed after a plugin stopped: %v", err)
	}
}

// TestAfterExit: a function given before the exit runs once Done is
// closed, in order with the others; one given after runs at once.
func TestAfterExit(t *testing.T) {
	t.Parallel()
	_, p := mustBootstrap(t, "serve", &subprocess.Config{})
	ran := make(chan string, 3)
	for _, name := range []string{"first", "second"} {
		p.AfterExit(func() {
			select {
			case <-p.Done():
			default:
				t.Errorf("%s ran before Done was closed", name)
			}
			ran <- name
		})
	}
	p.Stop(t.Context())
	if got := []string{<-ran, <-ran}; got[0] != "first" || got[1] != "second" {
		t.Errorf("ran %v, want [first second]", got)
	}
	p.AfterExit(func() { ran <- "late" })
	select {
	case got := <-ran:
		if got != "late" {
			t.Errorf("ran %q, want late", got)
		}
	default:
		t.Error("a function given after the exit did not run at once")
	}
}
