//go:build unix

package main

import (
	"errors"
	"os"
	"os/exec"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/vmre/vmre/internal/syncbuf"
)

// TestRunStopsCleanlyOnSIGTERM runs `vmre run` as a real process with the
// built-in example VM and checks that SIGTERM stops both with exit 0,
// leaving no exec-link directory behind.
func TestRunStopsCleanlyOnSIGTERM(t *testing.T) {
	cmd := exec.Command(os.Args[0], "run", "--listen", "127.0.0.1:0", "--log-format", "json")
	// The link directory is made in XDG_RUNTIME_DIR when it is set.
	runtimeDir := t.TempDir()
	cmd.Env = append(os.Environ(), "XDG_RUNTIME_DIR="+runtimeDir)
	stderr, err := cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cmd.Process.Kill(); _ = cmd.Wait() })

	// Read the log until the runtime is up and remember the plugin's pid.
	pidCh := make(chan int, 1)
	readDone := make(chan struct{})
	var logs syncbuf.Buffer
	go func() {
		defer close(readDone)
		buf := make([]byte, 4096)
		sent := false
		for {
			n, err := stderr.Read(buf)
			logs.Write(buf[:n])
			if !sent {
				if pid := runningPid(logs.String()); pid > 0 {
					pidCh <- pid
					sent = true
				}
			}
			if err != nil {
				return
			}
		}
	}()
	var pluginPid int
	select {
	case pluginPid = <-pidCh:
	case <-time.After(20 * time.Second):
		t.Fatalf("runtime never came up; log:\n%s", logs.String())
	}
	if links := execLinkDirs(t, runtimeDir); len(links) != 1 {
		t.Errorf("exec-link directories while running: %q, want one", links)
	}
	if err := cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	// Read to EOF before Wait, which closes the pipe.
	select {
	case <-readDone:
	case <-time.After(20 * time.Second):
		t.Fatalf("vmre run did not exit after SIGTERM; log:\n%s", logs.String())
	}
	err = cmd.Wait()
	if err != nil {
		t.Fatalf("vmre run exited with %v after SIGTERM; log:\n%s", err, logs.String())
	}
	// The engine's log is batched; its last line, logged just before run
	// returns, is on stderr only if the return path flushed it.
	if last := lastLogMessage(logs.String()); last != "stopped" {
		t.Errorf("last log message %q, want %q (log not flushed at exit?); log:\n%s", last, "stopped", logs.String())
	}
	if links := execLinkDirs(t, runtimeDir); len(links) != 0 {
		t.Errorf("exec-link directories left after exit: %q", links)
	}
	// The plugin was our grandchild and has been reaped by vmre: signal 0
	// must find no such process.
	if err := syscall.Kill(pluginPid, 0); !errors.Is(err, syscall.ESRCH) {
		t.Errorf("plugin pid %d still exists after vmre run exited (kill 0: %v)", pluginPid, err)
	}
}

// execLinkDirs returns the names of the exec-link directories in dir.
func execLinkDirs(t *testing.T, dir string) []string {
	t.Helper()
	ents, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, e := range ents {
		if strings.HasPrefix(e.Name(), "vmre-exec-") {
			names = append(names, e.Name())
		}
	}
	return names
}
