//go:build linux

package subprocess_test

import (
	"errors"
	"fmt"
	"os"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/rs/zerolog"
	"github.com/vmre/vmre"
	"github.com/vmre/vmre/subprocess"
)

// The lines childLogFormats writes, as real plugins write them (ESC as
// \x1b): avalanchego's zap console with colour codes, geth's terminal
// format with colour codes, zap production JSON, slog text, klog.
const (
	zapConsoleLine = "[12-06|21:46:25.946] \x1b[0;33mERROR\x1b[0;0m <X Chain> rpcchainvm/vm_server.go:252 failed to initialize vm {\"error\": \"unknown codec version\"}"
	gethLine       = "\x1b[33mWARN \x1b[0m[12-06|21:46:27.100] Snapshot extension failed                \x1b[33mpeer\x1b[0m=5a1c0e \x1b[33merr\x1b[0m=\"read tcp: i/o timeout\""
	zapJSONLine    = `{"level":"debug","ts":1796589990.5,"logger":"vm","caller":"vm/vm.go:88","msg":"block built","height":12}`
	slogLine       = `time=2026-12-06T21:46:29.123Z level=WARN msg="disk almost full" free_bytes=1048576`
	klogLine       = "E1206 21:46:25.946123    1234 server.go:12] connection refused"
	fdLimitReason  = "failed to set fd limit correctly: operation not permitted"
)

// childLogFormats handshakes, then writes every format on both streams, a
// line of exactly DefaultMaxLineBytes, invalid UTF-8 and a panic with its
// goroutine dump between normal lines, then "done" on each stream.
func childLogFormats() int {
	ln, err := handshake(childVersion())
	if err != nil {
		fmt.Fprintln(os.Stderr, "handshake:", err)
		return 1
	}
	defer ln.Close()
	for _, w := range []*os.File{os.Stdout, os.Stderr} {
		fmt.Fprintln(w, zapConsoleLine)
		fmt.Fprintln(w, gethLine)
		fmt.Fprintln(w, zapJSONLine)
		fmt.Fprintln(w, slogLine)
		fmt.Fprintln(w, klogLine)
	}
	fmt.Println(strings.Repeat("x", subprocess.DefaultMaxLineBytes))
	fmt.Println("bad \xff\xfe bytes")
	fmt.Fprint(os.Stderr, "before the panic\npanic: boom\n\ngoroutine 1 [running]:\nmain.main()\n\t/src/main.go:9 +0x25\nafter the panic\n")
	fmt.Println("done")
	fmt.Fprintln(os.Stderr, "done")
	waitSignal(syscall.SIGTERM)
	return 0
}

// childStdoutFatal gives up before its handshake with the reason on
// stdout only, as subnet-evm does when it cannot raise its fd limit.
func childStdoutFatal() int {
	fmt.Println(fdLimitReason)
	return 1
}

// A plugin writing every format on both streams: each line arrives parsed
// (level, message without colour codes, fields, logger, caller, the
// plugin's time), the 64 KiB line whole, invalid UTF-8 replaced, and the
// panic as one error line with its dump, the lines around it untouched.
func TestLogFormatsEndToEnd(t *testing.T) {
	t.Parallel()
	var (
		mu    sync.Mutex
		lines []subprocess.Line
		done  = make(chan struct{})
		dones int
	)
	cfg := &subprocess.Config{OnOutput: func(l *subprocess.Line) {
		mu.Lock()
		defer mu.Unlock()
		lines = append(lines, l.Clone())
		if string(l.Text) == "done" {
			if dones++; dones == 2 {
				close(done)
			}
		}
	}}
	mustBootstrap(t, "log-formats", cfg)
	select {
	case <-done:
	case <-time.After(60 * time.Second):
		t.Fatal("the plugin's output did not arrive")
	}
	mu.Lock()
	defer mu.Unlock()
	type want struct {
		format                  subprocess.LogFormat
		level                   zerolog.Level
		msg, fields, log, calls string
	}
	wants := map[string]want{
		"failed to initialize vm":   {subprocess.LogZapConsole, zerolog.ErrorLevel, "failed to initialize vm", `{"error": "unknown codec version"}`, "X Chain", "rpcchainvm/vm_server.go:252"},
		"Snapshot extension failed": {subprocess.LogGeth, zerolog.WarnLevel, "Snapshot extension failed", `{"peer":"5a1c0e","err":"read tcp: i/o timeout"}`, "", ""},
		"block built":               {subprocess.LogJSON, zerolog.DebugLevel, "block built", `{"height":12}`, "vm", "vm/vm.go:88"},
		"disk almost full":          {subprocess.LogLogfmt, zerolog.WarnLevel, "disk almost full", `{"free_bytes":"1048576"}`, "", ""},
		"connection refused":        {subprocess.LogKlog, zerolog.ErrorLevel, "connection refused", "", "", "server.go:12"},
	}
	seen := map[string]int{}
	var panicLine *subprocess.Line
	for i := range lines {
		l := &lines[i]
		if w, ok := wants[string(l.Message)]; ok {
			seen[l.Stream+" "+string(l.Message)]++
			got := want{l.Format, l.Level, string(l.Message), string(l.Fields), string(l.Logger), string(l.Caller)}
			if got != w || l.PluginTime.IsZero() {
				t.Errorf("%s line %q parsed as %+v (time %v), want %+v", l.Stream, l.Text, got, l.PluginTime, w)
			}
		}
		if strings.ContainsRune(string(l.Text), 0x1b) {
			t.Errorf("ESC in %q", l.Text)
		}
		switch {
		case l.Panic:
			panicLine = l
		case len(l.Text) == subprocess.DefaultMaxLineBytes:
			if l.Partial || l.Stream != subprocess.StreamStdout {
				t.Errorf("the 64 KiB line came as %+v", l.Partial)
			}
			seen["long"]++
		case string(l.Text) == "bad \ufffd bytes":
			seen["utf8"]++
		case string(l.Text) == "before the panic" || string(l.Text) == "after the panic":
			seen[string(l.Text)]++
		}
	}
	for _, stream := range []string{subprocess.StreamStdout, subprocess.StreamStderr} {
		for msg := range wants {
			if seen[stream+" "+msg] != 1 {
				t.Errorf("%s: %q seen %d times", stream, msg, seen[stream+" "+msg])
			}
		}
	}
	for _, k := range []string{"long", "utf8", "before the panic", "after the panic"} {
		if seen[k] != 1 {
			t.Errorf("%q seen %d times", k, seen[k])
		}
	}
	if panicLine == nil || panicLine.Level != zerolog.ErrorLevel || string(panicLine.Message) != "panic: boom" ||
		string(panicLine.Dump) != "\ngoroutine 1 [running]:\nmain.main()\n\t/src/main.go:9 +0x25" {
		t.Errorf("panic line %+v", panicLine)
	}
}

// A plugin that exits before its handshake with its reason on stdout only:
// the error names it, with its stream.
func TestStdoutReasonBeforeHandshake(t *testing.T) {
	t.Parallel()
	_, err := subprocess.Bootstrap(t.Context(), childCmd(t, "stdout-fatal"), nil)
	var exitErr *vmre.ExitError
	if !errors.As(err, &exitErr) {
		t.Fatalf("err = %v, want a *vmre.ExitError", err)
	}
	if len(exitErr.Tail) != 1 || exitErr.Tail[0] != (vmre.TailLine{Stream: subprocess.StreamStdout, Text: fdLimitReason}) {
		t.Errorf("tail %+v, want the stdout reason", exitErr.Tail)
	}
	if !strings.Contains(err.Error(), "stdout: "+fdLimitReason) {
		t.Errorf("error %q lacks the reason", err)
	}
}
