package engine_test

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"os/signal"
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
	"github.com/vmre/vmre/engine"
	"github.com/vmre/vmre/examples/examplevm"
	"github.com/vmre/vmre/subprocess"
)

// childEnv selects what the re-executed test binary does as a plugin.
const childEnv = "VMRE_ENGINE_TEST_CHILD"

// child runs the test binary as a plugin: "serve" is the example VM (JSON
// logs, handshake through the client package, clean exit on SIGTERM);
// "crash" writes to stderr and exits 3 before any handshake;
// "crash-bad-utf8" does the same after a stdout line with invalid UTF-8;
// "ignore-sigterm" is the example VM deaf to SIGTERM.
func child(mode string) int {
	switch mode {
	case "serve":
		ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM)
		defer stop()
		err := examplevm.Run(ctx, zerolog.New(os.Stdout).With().Timestamp().Logger(), examplevm.Config{Heartbeat: 20 * time.Millisecond})
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			return 1
		}
		return 0
	case "grpc-health":
		return grpcHealthChild()
	case "alloc-fork":
		return allocFork()
	case "ignore-sigterm":
		signal.Ignore(syscall.SIGTERM)
		err := examplevm.Run(context.Background(), zerolog.New(os.Stdout), examplevm.Config{})
		fmt.Fprintln(os.Stderr, err)
		return 1
	case "sleep":
		ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM)
		defer stop()
		<-ctx.Done()
		return 0
	case "crash":
		fmt.Fprintln(os.Stderr, "boom: cannot open database")
		return 3
	case "crash-bad-utf8":
		fmt.Fprintln(os.Stdout, "bad \xff byte")
		fmt.Fprintln(os.Stderr, "boom")
		return 3
	default:
		fmt.Fprintln(os.Stderr, "unknown child mode", mode)
		return 2
	}
}

// allocMiB is what the alloc-fork child keeps resident.
const allocMiB = 64

// allocFork is a plugin that touches allocMiB MiB, starts two children
// (printing "children PID PID" on stdout), then serves as the example VM.
func allocFork() int {
	buf := make([]byte, allocMiB<<20)
	for i := 0; i < len(buf); i += 4096 {
		buf[i] = 1
	}
	self, err := os.Executable()
	if err != nil {
		return 1
	}
	var pids []string
	for range 2 {
		cmd := exec.Command(self)
		cmd.Env = append(os.Environ(), childEnv+"=sleep")
		if err := cmd.Start(); err != nil {
			fmt.Fprintln(os.Stderr, err)
			return 1
		}
		pids = append(pids, strconv.Itoa(cmd.Process.Pid))
	}
	fmt.Println("children " + strings.Join(pids, " "))
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM)
	defer stop()
	err = examplevm.Run(ctx, zerolog.New(os.Stdout), examplevm.Config{Heartbeat: time.Hour})
	runtime.KeepAlive(buf)
	if err != nil {
		return 1
	}
	return 0
}

func subprocessEngine(t *testing.T, mode string) *engine.Engine {
	t.Helper()
	return subprocessEngineConfig(t, mode, subprocess.Config{})
}

// subprocessEngineConfig is subprocessEngine with cfg's output callbacks.
func subprocessEngineConfig(t *testing.T, mode string, cfg subprocess.Config) *engine.Engine {
	t.Helper()
	log := zerolog.New(zerolog.NewTestWriter(t))
	launcher := engine.NewSubprocessLauncher(subprocess.Config{
		Log: log, HandshakeTimeout: time.Minute, GracefulTimeout: 5 * time.Second,
		OnOutput: cfg.OnOutput,
	},
		func(spec engine.Spec) (*exec.Cmd, error) {
			cmd := subprocess.NewCmd(spec.Path, spec.Args...)
			cmd.Env = append(os.Environ(), childEnv+"="+mode)
			return cmd, nil
		})
	return newEngine(t, launcher, func(c *engine.Config) { c.Launcher = launcher })
}

// The real launcher with a real plugin: running with pid and address, its
// JSON log lines in the ring with their level, a restart with a new pid,
// a stop that ends in exited with status 0.
func TestSubprocessLifecycle(t *testing.T) {
	t.Parallel()
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	e := subprocessEngine(t, "serve")
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()

	rt, err := e.Launch(ctx, engine.Spec{Name: "examplevm", Path: self})
	if err != nil {
		t.Fatalf("Launch: %v", err)
	}
	if rt.State != engine.StateRunning || rt.Pid == 0 || !strings.HasPrefix(rt.VMAddr, "127.0.0.1:") || rt.ProtocolVersion != 42 || rt.HandshakeDuration <= 0 {
		t.Fatalf("launched = %+v", rt)
	}
	lines, f, err := e.TailOutput(rt.ID, 0, true, engine.OutputFilter{})
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	for !containsText(lines, "heartbeat") {
		more, _, err := f.Next(ctx)
		if err != nil {
			t.Fatalf("no heartbeat in the output: %v (have %+v)", err, lines)
		}
		lines = append(lines, more...)
	}
	for _, l := range lines {
		if strings.Contains(string(l.Text), "heartbeat") && (l.Level != zerolog.InfoLevel || l.Stream != "stdout" || l.Pid != rt.Pid) {
			t.Fatalf("heartbeat line = %+v", l)
		}
	}

	again, err := e.Restart(ctx, rt.ID)
	if err != nil || again.State != engine.StateRunning || again.Pid == rt.Pid || again.ID != rt.ID {
		t.Fatalf("Restart = %+v, %v", again, err)
	}
	// Stop only once the new process is past its own handshake call (the
	// example VM reports a SIGTERM that lands inside it as an error).
	for seen := false; !seen; {
		more, _, err := f.Next(ctx)
		if err != nil {
			t.Fatalf("no heartbeat from the restarted process: %v", err)
		}
		for _, l := range more {
			seen = seen || (l.Pid == again.Pid && strings.Contains(string(l.Text), "heartbeat"))
		}
	}
	stopped, err := e.Stop(ctx, rt.ID)
	if err != nil || stopped.State != engine.StateExited || stopped.Exit == nil || !stopped.Exit.Success() {
		t.Fatalf("Stop = %+v (exit %+v), %v", stopped, stopped.Exit, err)
	}
}

// A plugin that dies before its handshake leaves a failed runtime with its
// exit status and stderr in the last error, at once.
func TestSubprocessCrash(t *testing.T) {
	t.Parallel()
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	e := subprocessEngine(t, "crash")
	start := time.Now()
	rt, err := e.Launch(t.Context(), engine.Spec{Name: "crashvm", Path: self})
	if err == nil {
		t.Fatalf("Launch of a crashing plugin succeeded: %+v", rt)
	}
	// The exit ends the wait, not subprocessEngine's 10 s handshake
	// timeout; how fast a loaded machine runs the child is not checked.
	if d := time.Since(start); d >= 10*time.Second {
		t.Fatalf("crash reported after %v, as if by the handshake timeout", d)
	}
	if rt.State != engine.StateFailed || rt.Exit == nil || rt.Exit.Code != 3 || !strings.Contains(rt.LastError, "boom: cannot open database") {
		t.Fatalf("failed runtime = %+v (exit %+v)", rt, rt.Exit)
	}
}

// A stop of a plugin that ignores SIGTERM ends in a SIGKILL after the
// grace period, and the runtime says so; a launch that crashes says why
// in a value, not only in text.
func TestSubprocessForcedStopAndCrashEnds(t *testing.T) {
	t.Parallel()
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	const grace = 300 * time.Millisecond
	launcher := engine.NewSubprocessLauncher(subprocess.Config{
		Log: zerolog.New(zerolog.NewTestWriter(t)), HandshakeTimeout: time.Minute, GracefulTimeout: grace,
	}, func(spec engine.Spec) (*exec.Cmd, error) {
		cmd := subprocess.NewCmd(spec.Path, spec.Args...)
		cmd.Env = append(os.Environ(), childEnv+"="+spec.Args[0])
		return cmd, nil
	})
	e := newEngine(t, launcher, nil)
	rt, err := e.Launch(t.Context(), engine.Spec{Name: "deaf", Path: self, Args: []string{"ignore-sigterm"}})
	if err != nil {
		t.Fatal(err)
	}
	rt, err = e.Stop(t.Context(), rt.ID)
	if err != nil || rt.End != engine.EndStopped || rt.Exit == nil || !rt.Exit.ForcedKill || rt.Exit.Signal != "killed" || rt.StopDuration < grace {
		t.Fatalf("stopped = %+v (exit %+v), %v; want ended by a forced kill after %v", rt, rt.Exit, err, grace)
	}
	rt, err = e.Launch(t.Context(), engine.Spec{Name: "crash", Path: self, Args: []string{"crash"}})
	if err == nil || rt.End != engine.EndLaunchFailed || !errors.Is(rt.LaunchErr, vmre.ErrProcessExited) || rt.Exit.ForcedKill {
		t.Fatalf("crashed = %+v (exit %+v), %v; want a failed launch, process exited", rt, rt.Exit, err)
	}
}

// The launcher feeds the ring through OnOutput (the text copied, invalid
// UTF-8 replaced) and still calls the caller's OnOutput first, for every
// line.
func TestSubprocessLauncherOutputCallbacks(t *testing.T) {
	t.Parallel()
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	var (
		mu      sync.Mutex
		viaLine []string
	)
	e := subprocessEngineConfig(t, "crash-bad-utf8", subprocess.Config{
		OnOutput: func(l *subprocess.Line) {
			mu.Lock()
			defer mu.Unlock()
			viaLine = append(viaLine, l.Stream+" "+string(l.Text))
		},
	})
	ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
	defer cancel()
	rt, err := e.Launch(ctx, engine.Spec{Name: "crashvm", Path: self})
	if err == nil {
		t.Fatalf("Launch of a crashing plugin succeeded: %+v", rt)
	}
	lines, _, err := e.TailOutput(rt.ID, 0, false, engine.OutputFilter{})
	if err != nil {
		t.Fatal(err)
	}
	var ring []string
	for _, l := range lines {
		ring = append(ring, l.Stream+" "+string(l.Text))
	}
	slices.Sort(ring) // the streams are read concurrently
	want := []string{"stderr boom", "stdout bad \uFFFD byte"}
	if !slices.Equal(ring, want) {
		t.Errorf("ring holds %q, want %q", ring, want)
	}
	mu.Lock()
	defer mu.Unlock()
	slices.Sort(viaLine)
	if !slices.Equal(viaLine, want) {
		t.Errorf("OnOutput saw %q, want %q", viaLine, want)
	}
}

func containsText(lines []subprocess.Line, s string) bool {
	for _, l := range lines {
		if strings.Contains(string(l.Text), s) {
			return true
		}
	}
	return false
}

// TestRunningRuntimesHoldNoLaunchGoroutine: a running subprocess runtime
// keeps no goroutine of the engine's launch waiting for its exit; the exit
// is still recorded, and a restart's exit too.
//
// Not parallel: the stacks of every goroutine are read, and other tests'
// launches in progress would be counted.
func TestRunningRuntimesHoldNoLaunchGoroutine(t *testing.T) {
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	e := subprocessEngine(t, "serve")
	ctx, cancel := context.WithTimeout(t.Context(), 60*time.Second)
	defer cancel()
	const n = 5
	ids := make([]string, 0, n)
	for i := range n {
		rt, err := e.Launch(ctx, engine.Spec{Name: fmt.Sprintf("vm%d", i), Path: self})
		if err != nil {
			t.Fatalf("Launch: %v", err)
		}
		ids = append(ids, rt.ID)
	}
	// A launch goroutine that returned is no longer in any stack; one
	// parked on the runtime's exit is, for the runtime's life. Launch
	// returns once the launch has its outcome, and its goroutine ends
	// just after: look until it has, for eventWait at most.
	buf := make([]byte, 1<<22)
	for deadline := time.Now().Add(eventWait); ; runtime.Gosched() {
		stacks := string(buf[:runtime.Stack(buf, true)])
		got := strings.Count(stacks, "engine.(*Engine).launch(")
		if got == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Errorf("%d goroutines in Engine.launch with %d runtimes running, want 0", got, n)
			break
		}
	}
	for _, id := range ids {
		stopped, err := e.Stop(ctx, id)
		if err != nil || stopped.State != engine.StateExited || stopped.Exit == nil {
			t.Fatalf("Stop = %+v, %v", stopped, err)
		}
	}
}
