//go:build unix

package main

import (
	"bufio"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// TestRunSurvivesItsLogReader: the reader of vmre run's stdout and stderr
// goes away, as a pipeline's consumer does when Ctrl-C reaches it first.
// vmre run must keep running rather than die of SIGPIPE at its next log
// line (its plugin then killed by the parent-death signal): its metrics
// count the log's lost bytes, and SIGTERM still stops the plugin in its
// grace period: exit status 0.
func TestRunSurvivesItsLogReader(t *testing.T) {
	t.Parallel()
	r, w, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	// The plugin records the signals it starts with ignored, then becomes
	// the example VM (the test binary acting as vmre).
	sigIgn := filepath.Join(t.TempDir(), "sigign")
	plugin := writeScript(t, "grep SigIgn /proc/self/status > \"$SIGIGN\"\nexec \"$VMRE_BIN\" "+exampleVMCommand+"\n")
	cmd := exec.Command(os.Args[0], "run", "--listen", "127.0.0.1:0", "--log-format", "json", "--", plugin)
	cmd.Env = append(os.Environ(), "SIGIGN="+sigIgn, "VMRE_BIN="+os.Args[0])
	cmd.Stdout, cmd.Stderr = w, w
	startPiped(t, cmd, w)

	var pid int
	var api string
	for s := bufio.NewScanner(r); pid == 0 && s.Scan(); {
		var e logEntry
		if json.Unmarshal(s.Bytes(), &e) == nil {
			switch e.Message {
			case "api listening":
				api = e.Addr
			case "runtime running":
				pid = e.Pid
			}
		}
	}
	if pid == 0 {
		r.Close()
		t.Fatalf("vmre run ended before its runtime was running: %v", waitExit(t, cmd))
	}
	checkSIGPIPEDefault(t, sigIgn)
	r.Close()
	// A line vmre logs at once (a warning) goes into the broken pipe.
	if err := cmd.Process.Signal(syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
	waitLogLost(t, api)
	// Then the stop logs more: each write fails with EPIPE.
	if err := cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatalf("vmre run is gone before SIGTERM: %v (%v)", err, waitExit(t, cmd))
	}
	if err := waitExit(t, cmd); err != nil {
		t.Fatalf("vmre run: %v, want exit status %d (every runtime stopped in its grace period)", err, exitOK)
	}
	if err := syscall.Kill(pid, 0); !errors.Is(err, syscall.ESRCH) {
		t.Errorf("plugin pid %d survived vmre run (kill 0: %v)", pid, err)
	}
}

// TestDoctorSurvivesClosedOutput: vmre doctor with stdout and stderr both
// going to a pipe nobody reads still checks and stops the plugin and exits
// with the check's status, instead of dying of SIGPIPE at its first line.
func TestDoctorSurvivesClosedOutput(t *testing.T) {
	t.Parallel()
	r, w, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	r.Close()
	cmd := exec.Command(os.Args[0], "doctor", "--", os.Args[0], exampleVMCommand)
	cmd.Stdout, cmd.Stderr = w, w
	startPiped(t, cmd, w)
	if err := waitExit(t, cmd); err != nil {
		t.Fatalf("vmre doctor: %v, want exit status %d", err, exitOK)
	}
}

// startPiped starts cmd and closes w, its output's write end, in this
// process; the process is killed and reaped if the test ends first.
func startPiped(t *testing.T, cmd *exec.Cmd, w *os.File) {
	t.Helper()
	err := cmd.Start()
	w.Close()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if cmd.ProcessState == nil {
			_ = cmd.Process.Kill()
			_ = cmd.Wait()
		}
	})
}

// waitExit waits for cmd to end and returns its exit error (nil for status
// 0), naming the signal that ended it, if one did.
func waitExit(t *testing.T, cmd *exec.Cmd) error {
	t.Helper()
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	select {
	case err := <-done:
		if ws, ok := cmd.ProcessState.Sys().(syscall.WaitStatus); ok && ws.Signaled() {
			return errors.New("ended by " + ws.Signal().String())
		}
		return err
	case <-time.After(60 * time.Second): // a bound for a hung test, not a timing assertion
		_ = cmd.Process.Kill()
		<-done
		return errors.New("did not exit in 60 s; killed")
	}
}

// checkSIGPIPEDefault fails the test if the SigIgn line of /proc/PID/status
// in the file path (Linux) has SIGPIPE ignored: vmre subscribes to the
// signal rather than ignoring it, since an ignored signal would stay ignored
// in every plugin it starts. Go programs reset it; a shell script does not.
func checkSIGPIPEDefault(t *testing.T, path string) {
	t.Helper()
	if runtime.GOOS != "linux" {
		return
	}
	line, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	mask, ok := strings.CutPrefix(strings.TrimSpace(string(line)), "SigIgn:")
	if !ok {
		t.Fatalf("the plugin recorded %q, want its SigIgn line", line)
	}
	ignored, err := strconv.ParseUint(strings.TrimSpace(mask), 16, 64)
	if err != nil {
		t.Fatalf("SigIgn %q: %v", mask, err)
	}
	if ignored&(1<<(syscall.SIGPIPE-1)) != 0 {
		t.Errorf("the plugin started with SIGPIPE ignored (SigIgn %s)", strings.TrimSpace(mask))
	}
}

// waitLogLost scrapes the metrics of the API at addr until
// vmre_log_lost_bytes_total is above zero.
func waitLogLost(t *testing.T, addr string) {
	t.Helper()
	deadline := time.Now().Add(time.Minute) // a bound for a hung test, not a timing assertion
	for {
		resp, err := http.Get("http://" + addr + "/metrics?name[]=vmre_log_lost_bytes_total")
		if err != nil {
			t.Fatalf("scrape after the log broke: %v", err)
		}
		body, err := io.ReadAll(resp.Body)
		resp.Body.Close()
		if err != nil {
			t.Fatal(err)
		}
		for line := range strings.Lines(string(body)) {
			if v, ok := strings.CutPrefix(line, "vmre_log_lost_bytes_total "); ok && strings.TrimSpace(v) != "0" {
				return
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("vmre_log_lost_bytes_total still zero; last scrape:\n%s", body)
		}
		time.Sleep(10 * time.Millisecond) // a scrape rate, not a wait for an event
	}
}
