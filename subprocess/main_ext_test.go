//go:build linux

package subprocess_test

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"os/signal"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/vmre/vmre"
	"github.com/vmre/vmre/client"
	"github.com/vmre/vmre/subprocess"
	"go.uber.org/goleak"
)

// The test binary doubles as every plugin (and as an engine) the tests
// launch: TestMain runs the child mode named in childModeEnv and exits.
const (
	childModeEnv = "SUBPROCESS_TEST_CHILD"
	versionEnv   = "SUBPROCESS_TEST_VERSION"
	floodEnv     = "SUBPROCESS_TEST_FLOOD" // "LINES,BYTES_PER_LINE"
)

var childModes = map[string]func() int{
	"serve":           childServe,
	"crash":           childCrash,
	"exit0":           childExit0,
	"hang":            childHang,
	"bad-version":     childBadVersion,
	"ignore-sigterm":  childIgnoreSIGTERM,
	"fork-grandchild": childForkGrandchild,
	"escape":          childEscape,
	"grandchild":      childGrandchild,
	"flood":           childFlood,
	"long-line":       childLongLine,
	"close-stdout":    childCloseStdout,
	"exit-after":      childExitAfterHandshake,
	"double-init":     childDoubleInit,
	"hold-conn":       childHoldConn,
	"engine":          childEngine,
	"rpcchainvm":      childRPCChainVM,
	"log-formats":     childLogFormats,
	"stdout-fatal":    childStdoutFatal,
	"limits":          childLimits,
	"alloc":           childAlloc,
	"term-handshake":  childTermHandshake,
	"preface-only":    childPrefaceOnly,
	"stdio-flags":     childStdioFlags,
}

func TestMain(m *testing.M) {
	if mode := os.Getenv(childModeEnv); mode != "" {
		run, ok := childModes[mode]
		if !ok {
			fmt.Fprintf(os.Stderr, "unknown child mode %q\n", mode)
			os.Exit(100)
		}
		// Never return into testing: it would print PASS on stdout.
		os.Exit(run())
	}
	// Children are this test binary; built with -race, each would sleep
	// 1 s at exit (GORACE's atexit_sleep_ms) and slow every graceful stop.
	if err := os.Setenv("GORACE", strings.TrimSpace(os.Getenv("GORACE")+" atexit_sleep_ms=0")); err != nil {
		panic(err)
	}
	goleak.VerifyTestMain(m, leakOptions()...)
}

// leakOptions ignores the package's two process-wide goroutines.
func leakOptions() []goleak.Option {
	return []goleak.Option{
		goleak.IgnoreAnyFunction(subprocess.SpawnerFunc),
		goleak.IgnoreAnyFunction(subprocess.WatchdogFunc),
	}
}

// childCmd returns a command that runs the test binary in mode.
func childCmd(t testing.TB, mode string, env ...string) *exec.Cmd {
	t.Helper()
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	cmd := subprocess.NewCmd(exe)
	cmd.Env = append(os.Environ(), childModeEnv+"="+mode)
	cmd.Env = append(cmd.Env, env...)
	return cmd
}

// --- child modes -----------------------------------------------------------

func childVersion() uint32 {
	if v, err := strconv.ParseUint(os.Getenv(versionEnv), 10, 32); err == nil {
		return uint32(v)
	}
	return vmre.ProtocolVersion
}

// handshake listens for a (never served) VM address and handshakes with
// the engine through the real client, as a plugin does.
func handshake(version uint32) (net.Listener, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	return ln, client.Handshake(ctx, version, ln.Addr().String())
}

// waitSignal blocks until one of sigs arrives. A pending signal.Notify
// keeps Go from declaring the process deadlocked.
func waitSignal(sigs ...os.Signal) os.Signal {
	c := make(chan os.Signal, 1)
	signal.Notify(c, sigs...)
	return <-c
}

func childServe() int {
	signals := make(chan os.Signal, 1)
	signal.Notify(signals, syscall.SIGTERM)
	for _, key := range vmre.EngineAddressKeys() {
		fmt.Printf("env %s=%s\n", key, os.Getenv(key))
	}
	fmt.Printf("token-len %d\n", len(os.Getenv(vmre.HandshakeTokenKey)))
	ln, err := handshake(childVersion())
	if err != nil {
		fmt.Fprintln(os.Stderr, "handshake:", err)
		return 1
	}
	fmt.Printf("vm-addr %s\n", ln.Addr())
	<-signals
	fmt.Println("got sigterm")
	return 0
}

func childCrash() int {
	for i := 1; i <= 30; i++ {
		fmt.Fprintf(os.Stderr, "starting step %d\n", i)
	}
	fmt.Fprintln(os.Stderr, "boom: out of cheese")
	return 3
}

func childExit0() int { return 0 }

func childHang() int {
	fmt.Println("hanging")
	waitSignal(syscall.SIGTERM)
	return 0
}

func childBadVersion() int {
	_, err := handshake(41)
	fmt.Fprintln(os.Stderr, "handshake:", err)
	waitSignal(syscall.SIGTERM)
	return 0
}

func childIgnoreSIGTERM() int {
	signal.Ignore(syscall.SIGTERM)
	if _, err := handshake(childVersion()); err != nil {
		return 1
	}
	fmt.Println("ignoring sigterm")
	waitSignal(syscall.SIGUSR2)
	return 0
}

// childForkGrandchild starts a grandchild that ignores SIGTERM and holds
// the plugin's stderr, prints its pid, handshakes, and exits on SIGTERM,
// leaving the grandchild behind unless the engine kills the group.
func childForkGrandchild() int {
	signals := make(chan os.Signal, 1)
	signal.Notify(signals, syscall.SIGTERM)
	gc, err := startGrandchild()
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	fmt.Printf("grandchild=%d\n", gc.Process.Pid)
	if _, err := handshake(childVersion()); err != nil {
		return 1
	}
	<-signals
	return 0
}

// childEscape starts a grandchild in a session of its own that keeps the
// plugin's stdout open, prints its pid, handshakes and exits.
func childEscape() int {
	exe, err := os.Executable()
	if err != nil {
		return 1
	}
	gc := exec.Command(exe)
	gc.Env = append(os.Environ(), childModeEnv+"=grandchild")
	gc.Stdout = os.Stdout
	gc.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	if err := gc.Start(); err != nil {
		return 1
	}
	fmt.Printf("escaped=%d\n", gc.Process.Pid)
	if _, err := handshake(childVersion()); err != nil {
		return 1
	}
	return 0
}

func childGrandchild() int {
	signal.Ignore(syscall.SIGTERM)
	fmt.Println("ready")
	waitSignal(syscall.SIGUSR2)
	return 0
}

func childFlood() int {
	var lines, size int
	if _, err := fmt.Sscanf(os.Getenv(floodEnv), "%d,%d", &lines, &size); err != nil {
		return 2
	}
	if _, err := handshake(childVersion()); err != nil {
		return 1
	}
	line := []byte(strings.Repeat("f", size-1) + "\n")
	w := bufio.NewWriterSize(os.Stdout, 1<<20)
	for range lines {
		if _, err := w.Write(line); err != nil {
			return 1
		}
	}
	if err := w.Flush(); err != nil {
		return 1
	}
	return 0
}

// longLineBytes is the size of childLongLine's one line.
const longLineBytes = 10 << 20

func childLongLine() int {
	if _, err := handshake(childVersion()); err != nil {
		return 1
	}
	chunk := []byte(strings.Repeat("L", 1<<20))
	for range longLineBytes / len(chunk) {
		if _, err := os.Stdout.Write(chunk); err != nil {
			return 1
		}
	}
	if _, err := os.Stdout.Write([]byte("\n")); err != nil {
		return 1
	}
	return 0
}

func childCloseStdout() int {
	signals := make(chan os.Signal, 1)
	signal.Notify(signals, syscall.SIGTERM)
	fmt.Println("closing stdout")
	os.Stdout.Close()
	if _, err := handshake(childVersion()); err != nil {
		return 1
	}
	fmt.Fprintln(os.Stderr, "stdout closed, still here")
	<-signals
	fmt.Fprintln(os.Stderr, "got sigterm")
	return 0
}

func childExitAfterHandshake() int {
	if _, err := handshake(childVersion()); err != nil {
		return 1
	}
	fmt.Fprintln(os.Stderr, "leaving after the handshake")
	return 5
}

func childDoubleInit() int {
	ln, err := handshake(childVersion())
	if err != nil {
		return 1
	}
	_, err = handshake(childVersion())
	fmt.Fprintf(os.Stderr, "second initialize: %v\n", err)
	defer ln.Close()
	waitSignal(syscall.SIGTERM)
	return 0
}

// childTermHandshake handshakes with a context that SIGTERM cancels, as
// a plugin that stops on SIGTERM whenever it comes does: a SIGTERM that
// reaches it while its handshake client still waits for the answer makes
// it exit 1, one that comes after makes it exit 0.
func childTermHandshake() int {
	return termHandshake(func(ctx context.Context, vmAddr string) error {
		return client.Handshake(ctx, childVersion(), vmAddr)
	})
}

// termHandshake is childTermHandshake with handshake as the plugin's
// handshake client.
func termHandshake(handshake func(ctx context.Context, vmAddr string) error) int {
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM)
	defer stop()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 1
	}
	defer ln.Close()
	if err := handshake(ctx, ln.Addr().String()); err != nil {
		fmt.Fprintln(os.Stderr, "handshake:", err)
		return 1
	}
	<-ctx.Done()
	return 0
}

// childPrefaceOnly opens a connection to the engine's handshake server,
// sends the HTTP/2 client preface and then nothing, as a client does that
// gets no CPU between its preface and its SETTINGS frame, and reads until
// the server ends the connection. It prints "ended after D: ERR", then
// handshakes on a connection of its own and exits 0 on SIGTERM.
func childPrefaceOnly() int {
	conn, err := net.Dial("tcp", os.Getenv(vmre.EngineAddressKey))
	if err != nil {
		fmt.Fprintln(os.Stderr, "dial:", err)
		return 1
	}
	start := time.Now()
	if _, err := conn.Write([]byte("PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n")); err != nil {
		fmt.Fprintln(os.Stderr, "write:", err)
		return 1
	}
	_, err = io.Copy(io.Discard, conn)
	fmt.Printf("ended after %s: %v\n", time.Since(start), err)
	conn.Close()
	return childServe()
}

// childHoldConn opens a second connection to the engine's handshake server,
// leaves a request half sent on it (its headers, and one byte of the body
// they announce, so that the server's ReadHeaderTimeout does not end it)
// and hands it to a grandchild in a session of its own (which neither the
// plugin's exit nor the engine's group kill ends), so the server cannot
// finish a graceful shutdown; it prints "holder=PID", handshakes (with
// childVersion, which may be refused) and exits on SIGTERM.
func childHoldConn() int {
	signals := make(chan os.Signal, 1)
	signal.Notify(signals, syscall.SIGTERM)
	conn, err := net.Dial("tcp", os.Getenv(vmre.EngineAddressKey))
	if err != nil {
		fmt.Fprintln(os.Stderr, "dial:", err)
		return 1
	}
	const halfSent = "POST /vm.runtime.Runtime/Initialize HTTP/1.1\r\nHost: engine\r\n" +
		"Content-Type: application/json\r\nContent-Length: 1000\r\n\r\n{"
	if _, err := conn.Write([]byte(halfSent)); err != nil {
		fmt.Fprintln(os.Stderr, "write:", err)
		return 1
	}
	f, err := conn.(*net.TCPConn).File()
	if err != nil {
		return 1
	}
	exe, err := os.Executable()
	if err != nil {
		return 1
	}
	gc := exec.Command(exe)
	gc.Env = append(os.Environ(), childModeEnv+"=grandchild")
	gc.ExtraFiles = []*os.File{f}
	gc.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	if err := gc.Start(); err != nil {
		fmt.Fprintln(os.Stderr, "start holder:", err)
		return 1
	}
	fmt.Printf("holder=%d\n", gc.Process.Pid)
	// The server accepts connections in order, so the held one is being
	// served before the handshake's is.
	if _, err := handshake(childVersion()); err != nil {
		fmt.Fprintln(os.Stderr, "handshake:", err)
	}
	<-signals
	return 0
}

// childEngine plays an engine that launches a plugin ignoring SIGTERM and
// a plugin with a grandchild, prints "pid N" for each of the three
// processes, then "ready", and waits to be killed.
func childEngine() int {
	exe, err := os.Executable()
	if err != nil {
		return 1
	}
	grandchild := make(chan string, 1)
	ctx := context.Background()
	for _, mode := range []string{"ignore-sigterm", "fork-grandchild"} {
		cmd := subprocess.NewCmd(exe)
		cmd.Env = append(os.Environ(), childModeEnv+"="+mode)
		cfg := &subprocess.Config{HandshakeTimeout: 30 * time.Second}
		if mode == "fork-grandchild" {
			cfg.OnOutput = func(pl *subprocess.Line) {
				l := asOut(pl)
				if pid, ok := strings.CutPrefix(l.Text, "grandchild="); ok {
					grandchild <- pid
				}
			}
		}
		p, err := subprocess.Bootstrap(ctx, cmd, cfg)
		if err != nil {
			fmt.Println("bootstrap:", err)
			return 1
		}
		fmt.Printf("pid %d\n", p.Pid())
	}
	fmt.Printf("pid %s\n", <-grandchild)
	fmt.Println("ready")
	waitSignal(syscall.SIGUSR2)
	return 0
}

// startGrandchild starts the "grandchild" mode (it ignores SIGTERM and
// stays in the caller's process group) and returns once it has set up its
// signal handling.
func startGrandchild() (*exec.Cmd, error) {
	exe, err := os.Executable()
	if err != nil {
		return nil, err
	}
	gc := exec.Command(exe)
	gc.Env = append(os.Environ(), childModeEnv+"=grandchild")
	gc.Stderr = os.Stderr
	ready, err := gc.StdoutPipe()
	if err != nil {
		return nil, err
	}
	if err := gc.Start(); err != nil {
		return nil, fmt.Errorf("start grandchild: %w", err)
	}
	if _, err := bufio.NewReader(ready).ReadString('\n'); err != nil {
		return nil, fmt.Errorf("wait for grandchild: %w", err)
	}
	return gc, nil
}
