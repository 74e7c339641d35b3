package main

import (
	"encoding/json"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"

	"github.com/vmre/vmre/internal/preflight/preflighttest"
	"golang.org/x/sys/unix"
)

// probeDumpEnv makes the test binary a probe: it tries, as whatever user
// it runs as, what a plugin of the engine's user could do to the engine
// whose pid the variable holds, prints a JSON object of attempt -> ""
// (allowed) or the error, and exits.
const probeDumpEnv = "VMRE_TEST_PROBE_DUMP"

func probeDump(pidText string) int {
	pid, err := strconv.Atoi(pidText)
	if err != nil {
		return 2
	}
	proc := "/proc/" + pidText
	result := map[string]string{}
	record := func(what string, err error) {
		result[what] = ""
		if err != nil {
			result[what] = err.Error()
		}
	}
	_, err = os.ReadFile(proc + "/environ")
	record("environ", err)
	_, err = os.ReadDir(proc + "/fd")
	record("fd", err)
	mem, err := os.Open(proc + "/mem")
	if err == nil {
		_ = mem.Close()
	}
	record("mem", err)
	// Seized, the engine is not stopped; the probe's exit detaches it.
	record("ptrace", unix.PtraceSeize(pid))
	if err := json.NewEncoder(os.Stdout).Encode(result); err != nil {
		return 1
	}
	return 0
}

// TestRunIsNotDumpable runs `vmre run` and, as a process of the same user
// (uid 65534 for both when the test runs as root, whom nothing stops),
// tries to read its environment, list its descriptors, open its memory and
// ptrace it: by default all are refused; with --dumpable all succeed. The
// non-dumpable engine still launches a pinned plugin through
// /proc/self/fd/N and reads its own /proc/self for its metrics.
func TestRunIsNotDumpable(t *testing.T) {
	bin, cred := sameUserBinary(t)
	pin := "sha256:" + preflighttest.FileSHA256(t, bin)
	for _, tc := range []struct {
		name    string
		args    []string
		pid1    bool // vmre run starts as its PID namespace's init
		allowed bool
	}{
		{name: "default", allowed: false},
		{name: "--dumpable", args: []string{"--dumpable"}, allowed: true},
		// The init holds vmre's environment too; --dumpable is the engine's.
		{name: "PID 1", args: []string{"--dumpable"}, pid1: true, allowed: false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			args := append([]string{"run", "--listen", "127.0.0.1:0", "--log-format", "json", "--sha256", pin}, tc.args...)
			cmd := exec.Command(bin, append(args, "--", bin, exampleVMCommand)...)
			cmd.SysProcAttr = &syscall.SysProcAttr{Credential: cred}
			if tc.pid1 {
				if os.Geteuid() != 0 {
					t.Skip("a PID namespace needs root (CI runs as root)")
				}
				cmd.SysProcAttr.Cloneflags = syscall.CLONE_NEWPID
			}
			p := startRunCmd(t, cmd)
			addr := p.waitFor(t, "api listening", "").Addr
			p.waitFor(t, "runtime running", "")

			probe := exec.Command(bin)
			probe.Env = append(os.Environ(), probeDumpEnv+"="+strconv.Itoa(cmd.Process.Pid))
			probe.SysProcAttr = &syscall.SysProcAttr{Credential: cred}
			out, err := probe.Output()
			if err != nil {
				t.Fatalf("probe: %v", err)
			}
			var result map[string]string
			if err := json.Unmarshal(out, &result); err != nil {
				t.Fatalf("probe output %q: %v", out, err)
			}
			for _, what := range []string{"environ", "fd", "mem", "ptrace"} {
				got, ok := result[what]
				switch {
				case !ok:
					t.Errorf("probe did not try %s: %s", what, out)
				case tc.allowed && got != "":
					t.Errorf("%s of a dumpable engine refused to a process of its user: %s", what, got)
				case !tc.allowed && got == "":
					t.Errorf("%s of the engine allowed to a process of its user", what)
				}
			}
			// The process collector reads /proc/self/stat and fd.
			resp, err := http.Get("http://" + addr + "/metrics")
			if err != nil {
				t.Fatal(err)
			}
			body, err := io.ReadAll(resp.Body)
			_ = resp.Body.Close()
			if err != nil || resp.StatusCode != http.StatusOK || !hasPositiveMetric(string(body), "process_open_fds") {
				t.Errorf("metrics: status %d, %v; process_open_fds missing or 0:\n%.2000s", resp.StatusCode, err, body)
			}
			p.signal(t, syscall.SIGTERM)
			if code := p.exitCode(t); code != 0 {
				t.Errorf("exit code %d after SIGTERM", code)
			}
		})
	}
}

func hasPositiveMetric(text, name string) bool {
	for line := range strings.SplitSeq(text, "\n") {
		if v, ok := strings.CutPrefix(line, name+" "); ok {
			f, err := strconv.ParseFloat(v, 64)
			return err == nil && f > 0
		}
	}
	return false
}

// sameUserBinary returns the test binary to run both the engine and the
// probe, and the credential to run them with. Root may ptrace anything, so
// as root both run as uid 65534 from a copy of the binary that user can
// execute; otherwise as the test's own user.
func sameUserBinary(t *testing.T) (string, *syscall.Credential) {
	t.Helper()
	if os.Geteuid() != 0 {
		return os.Args[0], nil
	}
	dir, err := os.MkdirTemp("", "vmre-dumpable-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = os.RemoveAll(dir) })
	if err := os.Chmod(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	src, err := os.ReadFile(os.Args[0])
	if err != nil {
		t.Fatal(err)
	}
	bin := filepath.Join(dir, "vmre.test")
	if err := os.WriteFile(bin, src, 0o755); err != nil {
		t.Fatal(err)
	}
	return bin, &syscall.Credential{Uid: 65534, Gid: 65534, Groups: []uint32{}}
}
