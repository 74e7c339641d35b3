//go:build linux

package subprocess_test

import (
	"bufio"
	"context"
	"fmt"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/vmre/vmre/subprocess"
)

// The escape tests: a plugin's child tries to outlive a SIGKILLed engine.
// An "engine-attacked" child bootstraps one plugin in the mode named by
// attackEnv and relays the plugin's "victim=" line; the test SIGKILLs the
// engine and the victim must die with it.
const (
	attackEnv       = "SUBPROCESS_TEST_ATTACK"
	attackCgroupEnv = "SUBPROCESS_TEST_ATTACK_CGROUP" // the engine's Config.CgroupRoot
	watchdogPidEnv  = "SUBPROCESS_TEST_WATCHDOG_PID"
	victimPrefix    = "victim="
)

func init() {
	childModes["engine-attacked"] = childEngineAttacked
	childModes["attack-setpgid"] = childAttackSetpgid
	childModes["attack-hold-watchdog"] = childAttackHoldWatchdog
	childModes["attack-setsid"] = childAttackSetsid
	childModes["hold-watchdog"] = childHoldWatchdog
}

// childEngineAttacked launches one $SUBPROCESS_TEST_ATTACK plugin. Once
// Bootstrap has returned (the watchdog shell runs by then) it writes the
// shell's pid to the plugin's stdin, relays the plugin's "victim=" line to
// stdout and waits to be killed.
func childEngineAttacked() int {
	exe, err := os.Executable()
	if err != nil {
		return 1
	}
	stdinR, stdinW, err := os.Pipe()
	if err != nil {
		return 1
	}
	victim := make(chan string, 1)
	cmd := subprocess.NewCmd(exe)
	cmd.Env = append(os.Environ(), childModeEnv+"="+os.Getenv(attackEnv))
	cmd.Stdin = stdinR
	cfg := &subprocess.Config{
		HandshakeTimeout: time.Minute,
		CgroupRoot:       os.Getenv(attackCgroupEnv),
		OnOutput: func(pl *subprocess.Line) {
			if l := asOut(pl); strings.HasPrefix(l.Text, victimPrefix) {
				victim <- l.Text
			}
		},
	}
	if _, err := subprocess.Bootstrap(context.Background(), cmd, cfg); err != nil {
		fmt.Println("bootstrap:", err)
		return 1
	}
	stdinR.Close()
	fmt.Fprintf(stdinW, "%d\n", watchdogPid())
	fmt.Println(<-victim)
	waitSignal(syscall.SIGUSR2)
	return 0
}

// watchdogPid finds this process's child running /bin/sh: the watchdog.
func watchdogPid() int {
	tasks, _ := os.ReadDir("/proc/self/task")
	for _, task := range tasks {
		kids, _ := os.ReadFile("/proc/self/task/" + task.Name() + "/children")
		for _, kid := range strings.Fields(string(kids)) {
			comm, _ := os.ReadFile("/proc/" + kid + "/comm")
			// Named after the path it ran, /bin/sh.
			if strings.TrimSpace(string(comm)) == "sh" {
				pid, _ := strconv.Atoi(kid)
				return pid
			}
		}
	}
	return 0
}

// childAttackSetpgid starts a SIGTERM-ignoring grandchild in the engine's
// process group if it can, in its own group otherwise, and reports which.
func childAttackSetpgid() int {
	enginePgid, err := syscall.Getpgid(os.Getppid())
	if err != nil {
		return 1
	}
	gc, err := startGrandchildWith(&syscall.SysProcAttr{Setpgid: true, Pgid: enginePgid})
	joined := "joined the engine's group"
	if err != nil {
		joined = "could not join the engine's group: " + err.Error()
		if gc, err = startGrandchildWith(nil); err != nil {
			return 1
		}
	}
	return victimThenServe(gc.Process.Pid, joined)
}

// childAttackSetsid starts a SIGTERM-ignoring grandchild in a session of
// its own.
func childAttackSetsid() int {
	gc, err := startGrandchildWith(&syscall.SysProcAttr{Setsid: true})
	if err != nil {
		return 1
	}
	return victimThenServe(gc.Process.Pid, "in a session of its own")
}

// childAttackHoldWatchdog reads the watchdog's pid from stdin and starts a
// grandchild that opens the watchdog's stdin through /proc for writing.
func childAttackHoldWatchdog() int {
	if _, err := handshake(childVersion()); err != nil {
		return 1
	}
	line, err := bufio.NewReader(os.Stdin).ReadString('\n')
	if err != nil {
		return 1
	}
	exe, err := os.Executable()
	if err != nil {
		return 1
	}
	gc := exec.Command(exe)
	gc.Env = append(os.Environ(), childModeEnv+"=hold-watchdog", watchdogPidEnv+"="+strings.TrimSpace(line))
	gc.Stderr = os.Stderr
	out, err := gc.StdoutPipe()
	if err != nil {
		return 1
	}
	if err := gc.Start(); err != nil {
		return 1
	}
	held, err := bufio.NewReader(out).ReadString('\n')
	if err != nil {
		return 1
	}
	fmt.Printf("%s%d %s\n", victimPrefix, gc.Process.Pid, strings.TrimSpace(held))
	waitSignal(syscall.SIGTERM)
	return 0
}

// childHoldWatchdog opens /proc/$SUBPROCESS_TEST_WATCHDOG_PID/fd/0 for
// writing, says whether it could, and keeps it open, ignoring SIGTERM.
func childHoldWatchdog() int {
	signal.Ignore(syscall.SIGTERM)
	f, err := os.OpenFile("/proc/"+os.Getenv(watchdogPidEnv)+"/fd/0", os.O_WRONLY, 0)
	if err != nil {
		fmt.Println("could not open the watchdog's stdin:", err)
	} else {
		defer f.Close()
		fmt.Println("holds the watchdog's stdin open")
	}
	waitSignal(syscall.SIGUSR2)
	return 0
}

// victimThenServe reports the victim, handshakes and waits for SIGTERM.
func victimThenServe(pid int, how string) int {
	fmt.Printf("%s%d %s\n", victimPrefix, pid, how)
	if _, err := handshake(childVersion()); err != nil {
		return 1
	}
	waitSignal(syscall.SIGTERM)
	return 0
}

// startGrandchildWith starts the "grandchild" mode with attr and waits for
// its "ready" line.
func startGrandchildWith(attr *syscall.SysProcAttr) (*exec.Cmd, error) {
	exe, err := os.Executable()
	if err != nil {
		return nil, err
	}
	gc := exec.Command(exe)
	gc.Env = append(os.Environ(), childModeEnv+"=grandchild")
	gc.Stderr = os.Stderr
	gc.SysProcAttr = attr
	ready, err := gc.StdoutPipe()
	if err != nil {
		return nil, err
	}
	if err := gc.Start(); err != nil {
		return nil, err
	}
	if _, err := bufio.NewReader(ready).ReadString('\n'); err != nil {
		return nil, err
	}
	return gc, nil
}

// killEngineUnderAttack runs an "engine-attacked" engine whose plugin runs
// attack, SIGKILLs the engine once the victim is reported, and fails t if
// the victim outlives it by subprocess.ExitBound.
func killEngineUnderAttack(t *testing.T, attack string, env ...string) {
	t.Helper()
	engine := childCmd(t, "engine-attacked", append(env, attackEnv+"="+attack)...)
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
	sc := bufio.NewScanner(stdout)
	if !sc.Scan() {
		t.Fatalf("engine said nothing: %v", sc.Err())
	}
	rest, ok := strings.CutPrefix(sc.Text(), victimPrefix)
	if !ok {
		t.Fatalf("engine said %q", sc.Text())
	}
	pidText, how, _ := strings.Cut(rest, " ")
	victim, err := strconv.Atoi(pidText)
	if err != nil {
		t.Fatalf("engine said %q", sc.Text())
	}
	t.Logf("victim %d %s", victim, how)
	fds := openPidfds(t, victim)
	if err := engine.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	_ = engine.Wait()
	if alive := fds.waitExited(subprocess.ExitBound); len(alive) > 0 {
		t.Errorf("the plugin's child %d (%s) survived the engine's SIGKILL by %v", victim, how, subprocess.ExitBound)
	}
}

// TestEscapeIntoEngineGroup: a plugin's child that moves itself into the
// engine's process group must not outlive the engine.
func TestEscapeIntoEngineGroup(t *testing.T) {
	t.Parallel()
	killEngineUnderAttack(t, "attack-setpgid")
}

// TestEscapeHoldingWatchdogInput: a plugin's child that opens the
// watchdog's stdin through /proc for writing must not keep the watchdog
// from seeing the engine die.
func TestEscapeHoldingWatchdogInput(t *testing.T) {
	t.Parallel()
	killEngineUnderAttack(t, "attack-hold-watchdog")
}

// TestEscapeNewSessionCaughtByCgroup: a plugin's child in a session of its
// own leaves the plugin's group; with a cgroup per plugin the watchdog
// still kills it when the engine dies. Needs a writable cgroup v2
// directory with cgroup.kill (Linux 5.14+): the test makes its own.
func TestEscapeNewSessionCaughtByCgroup(t *testing.T) {
	t.Parallel()
	root := testCgroupRoot(t)
	killEngineUnderAttack(t, "attack-setsid", attackCgroupEnv+"="+root)
}

// testCgroupRoot makes a cgroup v2 directory for a test's plugins under
// /sys/fs/cgroup/unified or /sys/fs/cgroup, removed at cleanup, and skips
// the test where there is none or it lacks cgroup.kill (Linux < 5.14).
func testCgroupRoot(t *testing.T) string {
	t.Helper()
	root := ""
	for _, base := range []string{"/sys/fs/cgroup/unified", "/sys/fs/cgroup"} {
		if _, err := os.Stat(filepath.Join(base, "cgroup.procs")); err != nil {
			continue
		}
		if _, err := os.Stat(filepath.Join(base, "cgroup.kill")); err != nil && base == "/sys/fs/cgroup" {
			continue
		}
		dir, err := os.MkdirTemp(base, "vmre-test-")
		if err != nil {
			continue
		}
		root = dir
		break
	}
	if root == "" {
		t.Skip("no writable cgroup v2 hierarchy to make a test cgroup in")
	}
	t.Cleanup(func() { _ = os.Remove(root) })
	if _, err := os.Stat(filepath.Join(root, "cgroup.kill")); err != nil {
		t.Skip("cgroup.kill missing (Linux < 5.14)")
	}
	return root
}
