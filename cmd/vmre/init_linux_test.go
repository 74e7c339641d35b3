package main

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// procMountEnv makes the test binary, started as the init of new PID and
// mount namespaces, mount the PID namespace's own /proc and exec itself
// again, still PID 1, without this variable: then it runs as vmre run in
// a container, or a Nomad exec task, does.
const procMountEnv = "VMRE_TEST_MOUNT_PROC"

func init() {
	if os.Getenv(procMountEnv) != "1" {
		return
	}
	err := unix.Mount("", "/", "", unix.MS_PRIVATE|unix.MS_REC, "")
	if err == nil {
		err = unix.Mount("proc", "/proc", "proc", unix.MS_NOSUID|unix.MS_NODEV|unix.MS_NOEXEC, "")
	}
	if err == nil {
		err = os.Unsetenv(procMountEnv)
	}
	if err == nil {
		err = unix.Exec(os.Args[0], os.Args, os.Environ())
	}
	fmt.Fprintf(os.Stderr, "PID namespace set-up: %v\n", err)
	os.Exit(125)
}

// TestRunAsInitReapsOrphans: vmre run as the init (PID 1) of its PID
// namespace. Its plugin leaves an orphan, which the kernel re-parents to
// PID 1; once the orphan has exited it is reaped, not left a zombie holding
// its PID. SIGHUP and SIGTERM sent to PID 1 reach vmre run, which stops
// the plugin in its grace period, and PID 1 exits 0.
func TestRunAsInitReapsOrphans(t *testing.T) {
	t.Parallel()
	if os.Geteuid() != 0 {
		t.Skip("a PID namespace needs root (CI runs as root)")
	}
	fifo := filepath.Join(t.TempDir(), "orphan")
	if err := unix.Mkfifo(fifo, 0o600); err != nil {
		t.Fatal(err)
	}
	// The subshell exits at once, orphaning its child, which exits once
	// the test has read its line; then the plugin becomes the example VM.
	plugin := writeScript(t, "( ( echo orphaned > \"$ORPHAN\" ) & )\nexec \"$VMRE_BIN\" "+exampleVMCommand+"\n")
	cmd, p := startAsInit(t, plugin, "ORPHAN="+fifo)

	read := make(chan error, 1)
	go func() {
		b, err := os.ReadFile(fifo)
		if err == nil && string(b) != "orphaned\n" {
			err = fmt.Errorf("read %q", b)
		}
		read <- err
	}()
	select {
	case err := <-read:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(60 * time.Second): // a bound for a hung test, not a timing assertion
		t.Fatal("the orphan never wrote its line")
	}
	waitNoZombie(t, cmd.Process.Pid)

	// Both signals go to PID 1, which passes them on.
	p.hupThenStop(t)
}

// TestRunAsInitCtrlC: Ctrl-C at a container's terminal sends SIGINT to
// every process of the init's process group. vmre run, started by the init,
// must get it once, not once directly and once passed on, which it would
// take for a second Ctrl-C and stop waiting for its plugin (exit 3).
func TestRunAsInitCtrlC(t *testing.T) {
	t.Parallel()
	if os.Geteuid() != 0 {
		t.Skip("a PID namespace needs root (CI runs as root)")
	}
	cmd, p := startAsInit(t, writeScript(t, "exec \"$VMRE_BIN\" "+exampleVMCommand+"\n"))
	// The init leads its own group here, as a container's does.
	if err := syscall.Kill(-cmd.Process.Pid, syscall.SIGINT); err != nil {
		t.Fatal(err)
	}
	ended := p.waitFor(t, "runtime ended", "")
	if code := p.exitCode(t); code != exitOK || strings.Contains(p.log.String(), "second signal") {
		t.Fatalf("exit code %d, want %d, after one SIGINT to the group; log:\n%s", code, exitOK, p.log.String())
	}
	if !strings.Contains(ended.raw, `"exit":"exit status 0"`) {
		t.Errorf("the plugin did not stop cleanly: %s", ended.raw)
	}
}

// startAsInit starts the test binary as vmre run -- plugin at PID 1 of new
// PID and mount namespaces, leading a process group of its own, with env
// added to its environment (and VMRE_BIN naming the test binary), and
// waits until its runtime runs.
func startAsInit(t *testing.T, plugin string, env ...string) (*exec.Cmd, *runProc) {
	t.Helper()
	cmd := exec.Command(os.Args[0], "run", "--listen", "127.0.0.1:0", "--log-format", "json", "--", plugin)
	cmd.Env = append(append(os.Environ(), procMountEnv+"=1", "VMRE_BIN="+os.Args[0]), env...)
	cmd.SysProcAttr = &syscall.SysProcAttr{Cloneflags: syscall.CLONE_NEWPID | syscall.CLONE_NEWNS, Setpgid: true}
	p := startRunCmd(t, cmd)
	p.waitFor(t, "runtime running", "")
	return cmd, p
}

// waitNoZombie waits until no child of the process pid is a zombie.
func waitNoZombie(t *testing.T, pid int) {
	t.Helper()
	deadline := time.Now().Add(60 * time.Second) // a bound for a hung test, not a timing assertion
	for {
		zombies, err := zombieChildren(pid)
		if err != nil {
			t.Fatal(err)
		}
		if len(zombies) == 0 {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("PID 1 (pid %d here) left its zombie children %v unreaped", pid, zombies)
		}
		time.Sleep(10 * time.Millisecond) // a polling rate, not a wait for an event
	}
}

// zombieChildren lists the zombie children of the process pid, from this
// process's /proc.
func zombieChildren(pid int) ([]int, error) {
	entries, err := os.ReadDir("/proc")
	if err != nil {
		return nil, err
	}
	var zombies []int
	for _, e := range entries {
		child, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		stat, err := os.ReadFile(filepath.Join("/proc", e.Name(), "stat"))
		if errors.Is(err, os.ErrNotExist) || errors.Is(err, syscall.ESRCH) {
			continue // ended meanwhile
		} else if err != nil {
			return nil, err
		}
		// pid (comm) state ppid ...: comm may hold spaces and parentheses.
		fields := strings.Fields(string(stat[strings.LastIndexByte(string(stat), ')')+1:]))
		if len(fields) >= 2 && fields[0] == "Z" && fields[1] == strconv.Itoa(pid) {
			zombies = append(zombies, child)
		}
	}
	return zombies, nil
}
