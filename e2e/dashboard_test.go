package e2e

import (
	"bufio"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// The dashboard follows the engine across restarts (see
// web/test/reconnect.e2e.mjs): chromium on the page of a `vmre run` with the
// built-in example VM; when the script asks, the engine is killed by PID
// (SIGKILL, as a crash), then stopped (SIGTERM), and each time started again
// on the same address, and the page must show the new engine's runtime and
// output without a reload. Then, with scripted watch and output streams
// (playwright routes), the page must tail a runtime again only on a new
// watch stream, not on a resync snapshot, and tell a new engine's output
// from the same engine's by the engine instance id the streams carry,
// however the initial tail is split into messages.
func TestBrowserDashboardEngineRestart(t *testing.T) {
	t.Parallel()
	node, chromium, shots := browserTools(t)
	e := startVMRE(t)
	addr := e.apiAddr()
	token, _ := e.token()

	ctx, cancel := context.WithTimeout(t.Context(), 240*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, node, "test/reconnect.e2e.mjs",
		"--url", "http://"+addr+"/", "--token="+token, "--out", shots, "--chromium", chromium)
	cmd.Dir = filepath.Join(repoRoot, "web")
	cmd.WaitDelay = 5 * time.Second
	cmd.Stderr = &testLogWriter{t: t, prefix: "reconnect.e2e.mjs stderr: "}
	stdin, err := cmd.StdinPipe()
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
	restarts := 0
	ok := false
	sc := bufio.NewScanner(stdout)
	for sc.Scan() {
		line := sc.Text()
		t.Logf("reconnect.e2e.mjs: %s", line)
		if strings.HasPrefix(line, "reconnect ok") {
			ok = true
		}
		how, found := strings.CutPrefix(line, "restart-engine ")
		if !found {
			continue
		}
		switch how {
		case "sigkill":
			e.kill()
		case "sigterm":
			e.stop() // requires a clean exit
		default:
			t.Fatalf("reconnect.e2e.mjs asked for an unknown restart %q", how)
		}
		// The last --listen wins over startVMRE's 127.0.0.1:0.
		e = startVMRE(t, "--listen", addr)
		if got := e.apiAddr(); got != addr {
			t.Fatalf("restarted engine listens on %s, want %s", got, addr)
		}
		restarts++
		if _, err := fmt.Fprintf(stdin, "engine restarted after %s, pid %d\n", how, e.cmd.Process.Pid); err != nil {
			t.Fatalf("tell reconnect.e2e.mjs: %v", err)
		}
	}
	if err := cmd.Wait(); err != nil || !ok {
		t.Fatalf("reconnect.e2e.mjs: %v (see its output above)", err)
	}
	if restarts != 2 {
		t.Fatalf("the engine was restarted %d times, want 2", restarts)
	}
	if info, err := os.Stat(filepath.Join(shots, "dashboard-reconnected.png")); err != nil || info.Size() < 10_000 {
		t.Fatalf("screenshot dashboard-reconnected.png: %v", err)
	}
}

// kill ends the engine with SIGKILL, as a crash would, and waits for it. The
// exit is then marked clean, so the cleanup's check of a SIGTERM exit does
// not count the deliberate kill.
func (e *engine) kill() {
	_ = e.cmd.Process.Kill()
	<-e.waited
	e.err = nil
}

// The dashboard in chromium with scripted watch, event and output streams
// (see web/test/scripted.e2e.mjs): a runtime in backoff with its next
// attempt, resource samples and sparklines, one event panel for the history
// and the live events, output lines in the engine's parsed form, the level
// filter asking the engine for min_level, and the download. `vmre run`
// only serves the page.
func TestBrowserDashboardScripted(t *testing.T) {
	t.Parallel()
	node, chromium, shots := browserTools(t)
	e := startVMRE(t)
	token, _ := e.token()
	out, err := runCmd(t, 150*time.Second, filepath.Join(repoRoot, "web"), node, "test/scripted.e2e.mjs",
		"--url", e.apiURL()+"/", "--token="+token, "--out", shots, "--chromium", chromium)
	if err != nil || !strings.Contains(out, "scripted ok") {
		t.Fatalf("scripted dashboard test: %v\n%s", err, out)
	}
	if info, err := os.Stat(filepath.Join(shots, "dashboard-scripted.png")); err != nil || info.Size() < 10_000 {
		t.Fatalf("screenshot dashboard-scripted.png: %v", err)
	}
}
