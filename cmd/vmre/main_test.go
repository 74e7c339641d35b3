package main

import (
	"bytes"
	"context"
	"encoding/json"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/vmre/vmre"
	"github.com/vmre/vmre/logtime"
	"github.com/vmre/vmre/server"
)

// asVMRE makes the test binary behave as the vmre command, so the tests can
// launch it as a plugin ("example-vm") without building anything.
const asVMRE = "VMRE_TEST_AS_VMRE"

func TestMain(m *testing.M) {
	if pid := os.Getenv(probeDumpEnv); pid != "" {
		os.Exit(probeDump(pid))
	}
	if os.Getenv(asVMRE) == "1" {
		os.Exit(run(context.Background(), os.Args[1:], os.Stdout, os.Stderr))
	}
	// Children are this test binary; built with -race, each would sleep
	// 1 s at exit (GORACE's atexit_sleep_ms) and slow every graceful stop.
	if err := os.Setenv("GORACE", strings.TrimSpace(os.Getenv("GORACE")+" atexit_sleep_ms=0")); err != nil {
		panic(err)
	}
	// Children launched by the tests inherit this and act as vmre.
	if err := os.Setenv(asVMRE, "1"); err != nil {
		panic(err)
	}
	os.Exit(m.Run())
}

// vmreCmd runs the command in-process and returns its exit code and output.
func vmreCmd(t *testing.T, args ...string) (int, string, string) {
	t.Helper()
	var stdout, stderr bytes.Buffer
	code := run(t.Context(), args, &stdout, &stderr)
	t.Logf("vmre %s -> %d\nstdout:\n%s\nstderr:\n%s", strings.Join(args, " "), code, stdout.String(), stderr.String())
	return code, stdout.String(), stderr.String()
}

func writeScript(t *testing.T, body string) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "plugin.sh")
	if err := os.WriteFile(path, []byte("#!/bin/sh\n"+body), 0o755); err != nil {
		t.Fatal(err)
	}
	return path
}

func TestVersion(t *testing.T) {
	code, out, _ := vmreCmd(t, "version")
	if code != exitOK || !strings.HasPrefix(out, "vmre ") || !strings.Contains(out, "protocol 42") {
		t.Fatalf("version: code %d, output %q", code, out)
	}
}

// The example VM logs its times with milliseconds, as the engine does, so
// that the plugin_time of its lines tells apart the lines of one second.
// Without an engine it logs that its server listens, then fails.
func TestExampleVMLogsMilliseconds(t *testing.T) {
	for _, k := range vmre.EngineAddressKeys() {
		t.Setenv(k, "")
	}
	code, out, _ := vmreCmd(t, exampleVMCommand)
	var first struct{ Time, Message string }
	if err := json.Unmarshal([]byte(strings.SplitN(out, "\n", 2)[0]), &first); err != nil || code != exitFailure {
		t.Fatalf("exit code %d, first line %q (%v); want 1 after a JSON line", code, out, err)
	}
	if ts, err := time.Parse(logtime.Layout, first.Time); err != nil || ts.Format(logtime.Layout) != first.Time {
		t.Errorf("time %q of %q is not in logtime.Layout (milliseconds): %v", first.Time, first.Message, err)
	}
}

func TestUsageErrors(t *testing.T) {
	tests := []struct {
		name string
		args []string
	}{
		{"no command", nil},
		{"unknown command", []string{"launch"}},
		{"doctor without plugin", []string{"doctor"}},
		{"bad protocol version", []string{"doctor", "--protocol-version", "x", "--", "/bin/true"}},
		{"bad log level", []string{"doctor", "--log-level", "loud", "--", "/bin/true"}},
		{"handshake without vm-addr", []string{"handshake", "--engine", "127.0.0.1:1"}},
		{"handshake bad protocol", []string{"handshake", "--engine", "127.0.0.1:1", "--vm-addr", "127.0.0.1:2", "--protocol", "soap"}},
		{"negative attach health threshold", []string{"run", "--listen", "127.0.0.1:0", "--attach", "--attach-health-threshold", "-1"}},
		{"negative attach health interval", []string{"run", "--listen", "127.0.0.1:0", "--attach", "--attach-health-interval", "-1s"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if code, _, _ := vmreCmd(t, tt.args...); code != exitUsage {
				t.Errorf("exit code %d, want %d", code, exitUsage)
			}
		})
	}
}

func TestDoctorReportsHealthyPlugin(t *testing.T) {
	code, out, _ := vmreCmd(t, "doctor", "--log-level", "warn", "--", os.Args[0], exampleVMCommand)
	if code != exitOK {
		t.Fatalf("doctor exit code %d, want 0", code)
	}
	for _, want := range []string{"pid", "vm address         127.0.0.1:", "protocol version   42", "time to handshake", "grpc.health.v1     SERVING", "(exit status 0)", "result             OK"} {
		if !strings.Contains(out, want) {
			t.Errorf("report lacks %q", want)
		}
	}
}

func TestDoctorFailures(t *testing.T) {
	crash := writeScript(t, "echo 'loading config' >&2\necho 'fatal: no genesis file' >&2\nexit 3\n")
	// subnet-evm prints why it gives up on stdout, with colour codes.
	stdoutReason := writeScript(t, "printf 'failed to set fd limit correctly: \\033[31moperation not permitted\\033[0m\\r\\n'\nexit 1\n")
	// A plugin that waits for something before its handshake says so.
	waits := writeScript(t, "echo 'waiting for the lock on /data/db' >&2\nexec sleep 60\n")
	tests := []struct {
		name     string
		args     []string
		wantText []string
	}{
		{
			name:     "crash before handshake",
			args:     []string{"--handshake-timeout", "60s", "--", crash},
			wantText: []string{"handshake failed: process exited: exit status 3", "exit status: 3", "    stderr: loading config\n    stderr: fatal: no genesis file\n"},
		},
		{
			name:     "reason on stdout",
			args:     []string{"--handshake-timeout", "60s", "--", stdoutReason},
			wantText: []string{"exit status: 1", "    stdout: failed to set fd limit correctly: operation not permitted\n"},
		},
		{
			name:     "exit 0 before handshake",
			args:     []string{"--handshake-timeout", "60s", "--", "/bin/true"},
			wantText: []string{"handshake failed: process exited: exit status 0", "exit status: 0", "hint: the plugin exited with status 0 without calling Initialize"},
		},
		{
			name:     "version mismatch",
			args:     []string{"--handshake-timeout", "60s", "--protocol-version", "41,43", "--", os.Args[0], exampleVMCommand},
			wantText: []string{"handshake failed: protocol version mismatch engine: 41,43 vm: 42", "hint:"},
		},
		{
			name:     "no handshake",
			args:     []string{"--handshake-timeout", "300ms", "--", "/bin/sleep", "60"},
			wantText: []string{"handshake failed: timeout"},
		},
		{
			// Long enough for the line to be read on a loaded machine.
			name:     "no handshake, reason printed",
			args:     []string{"--handshake-timeout", "3s", "--", waits},
			wantText: []string{"handshake failed: timeout; output: stderr: waiting for the lock on /data/db", "last output lines:\n    stderr: waiting for the lock on /data/db\n", "hint:"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			start := time.Now()
			code, _, errOut := vmreCmd(t, append([]string{"doctor", "--log-level", "warn"}, tt.args...)...)
			elapsed := time.Since(start)
			if code != exitFailure {
				t.Errorf("exit code %d, want %d", code, exitFailure)
			}
			for _, want := range tt.wantText {
				if !strings.Contains(errOut, want) {
					t.Errorf("stderr lacks %q", want)
				}
			}
			// Every failure here is known long before a minute has
			// passed: at the plugin's exit or answer, or at the 300 ms
			// timeout. A doctor that waited for the 60 s handshake
			// timeout, or for the 60 s sleep to end, would fail this;
			// a loaded machine, taking seconds, would not.
			if elapsed > 30*time.Second {
				t.Errorf("doctor took %v to report the failure", elapsed)
			}
		})
	}
}

// recordingInitializer accepts one protocol version and records calls.
type recordingInitializer struct {
	mu    sync.Mutex
	calls []string
}

func (r *recordingInitializer) Initialize(_ context.Context, version uint32, addr string) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.calls = append(r.calls, addr)
	if version != vmre.ProtocolVersion {
		return &vmre.VersionMismatchError{Accepted: []uint32{vmre.ProtocolVersion}, Got: version}
	}
	return nil
}

func startEngine(t *testing.T, init vmre.Initializer) string {
	t.Helper()
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	mux := http.NewServeMux()
	mux.Handle(server.NewHandler(init))
	srv := server.NewHTTPServer(mux)
	go func() { _ = srv.Serve(lis) }()
	t.Cleanup(func() { _ = srv.Close() })
	return lis.Addr().String()
}

func TestHandshakeCommand(t *testing.T) {
	init := &recordingInitializer{}
	engine := startEngine(t, init)
	for _, protocol := range []string{"grpc", "grpcweb", "connect"} {
		t.Run(protocol, func(t *testing.T) {
			code, out, _ := vmreCmd(t, "handshake", "--engine", engine, "--protocol", protocol, "--vm-addr", "127.0.0.1:4000")
			if code != exitOK || !strings.Contains(out, "handshake accepted") {
				t.Fatalf("exit code %d, output %q", code, out)
			}
		})
	}
	t.Run("mismatch", func(t *testing.T) {
		code, _, errOut := vmreCmd(t, "handshake", "--engine", engine, "--protocol-version", "7", "--vm-addr", "127.0.0.1:4000")
		if code != exitFailure || !strings.Contains(errOut, "protocol version mismatch engine: 42 vm: 7") {
			t.Fatalf("exit code %d, stderr %q", code, errOut)
		}
	})
	t.Run("address from the environment", func(t *testing.T) {
		t.Setenv(vmre.EngineAddressKey, "")
		t.Setenv(vmre.AvalancheEngineAddressKey, engine)
		if code, _, _ := vmreCmd(t, "handshake", "--vm-addr", "127.0.0.1:4001"); code != exitOK {
			t.Fatalf("exit code %d", code)
		}
	})
	t.Run("no address anywhere", func(t *testing.T) {
		for _, key := range vmre.EngineAddressKeys() {
			t.Setenv(key, "")
		}
		code, _, errOut := vmreCmd(t, "handshake", "--vm-addr", "127.0.0.1:4002")
		if code != exitFailure || !strings.Contains(errOut, vmre.EngineAddressKey) {
			t.Fatalf("exit code %d, stderr %q", code, errOut)
		}
	})
	init.mu.Lock()
	defer init.mu.Unlock()
	if len(init.calls) != 5 {
		t.Errorf("engine saw %d calls, want 5: %v", len(init.calls), init.calls)
	}
}

// runningPid returns the pid from the engine's "runtime running" log line,
// or 0 if there is none yet.
func runningPid(log string) int {
	for line := range strings.SplitSeq(log, "\n") {
		var entry struct {
			Message string `json:"message"`
			Pid     int    `json:"pid"`
		}
		if json.Unmarshal([]byte(line), &entry) == nil && entry.Message == "runtime running" {
			return entry.Pid
		}
	}
	return 0
}

// lastLogMessage returns the message of the last JSON log line in log.
func lastLogMessage(log string) string {
	var last string
	for line := range strings.SplitSeq(log, "\n") {
		var entry struct {
			Message string `json:"message"`
		}
		if json.Unmarshal([]byte(line), &entry) == nil && entry.Message != "" {
			last = entry.Message
		}
	}
	return last
}

// TestDoctorFailsPluginThatMustBeKilled: a plugin whose VM never answers
// the Shutdown call and which ignores SIGTERM uses both grace periods and
// is then killed. doctor must wait for all of it (the grace period here is
// longer than the stop's margin, so a deadline of one grace period plus the
// margin ends first) and fail, naming the kill.
func TestDoctorFailsPluginThatMustBeKilled(t *testing.T) {
	// The VM address accepts connections and never answers. It is not the
	// plugin's, so doctor calls no Shutdown and says so; SIGTERM is
	// ignored, so the plugin is killed at the end of the grace period.
	silent, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	accepted := make(chan net.Conn, 16)
	t.Cleanup(func() {
		_ = silent.Close()
		for {
			select {
			case c := <-accepted:
				_ = c.Close()
			default:
				return
			}
		}
	})
	go func() {
		for {
			c, err := silent.Accept()
			if err != nil {
				return
			}
			accepted <- c // held open, unanswered, until the cleanup
		}
	}()
	plugin := writeScript(t, "trap '' TERM\n"+
		"'"+os.Args[0]+"' handshake --vm-addr "+silent.Addr().String()+" || exit 1\n"+
		"exec sleep 60\n")
	grace := stopMargin + 500*time.Millisecond
	code, out, errOut := vmreCmd(t, "doctor", "--log-level", "warn", "--graceful-timeout", grace.String(), "--", plugin)
	if code != exitFailure {
		t.Errorf("exit code %d, want %d", code, exitFailure)
	}
	for _, want := range []string{"(signal: killed)", "result             FAIL"} {
		if !strings.Contains(out, want) {
			t.Errorf("report lacks %q", want)
		}
	}
	if !strings.Contains(errOut, "vmre doctor: stop: the plugin was killed") {
		t.Errorf("stderr does not name the kill")
	}
}

// writeCounter counts the writes made to it.
type writeCounter struct {
	bytes.Buffer
	writes int
}

func (w *writeCounter) Write(p []byte) (int, error) {
	w.writes++
	return w.Buffer.Write(p)
}

// TestDoctorReportIsOneWrite: doctor's report reaches stdout in one
// write, not one per table cell.
func TestDoctorReportIsOneWrite(t *testing.T) {
	t.Parallel()
	var stdout writeCounter
	var stderr bytes.Buffer
	code := run(t.Context(), []string{"doctor", "--log-level", "warn", "--", os.Args[0], exampleVMCommand}, &stdout, &stderr)
	if code != exitOK || !strings.Contains(stdout.String(), "result             OK") {
		t.Fatalf("exit code %d, report %q, stderr %q", code, stdout.String(), stderr.String())
	}
	if stdout.writes != 1 {
		t.Errorf("the report took %d writes, want 1", stdout.writes)
	}
}
