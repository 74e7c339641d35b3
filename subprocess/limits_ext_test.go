//go:build linux

package subprocess_test

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/rs/zerolog"
	"github.com/vmre/vmre"
	"github.com/vmre/vmre/subprocess"
	"golang.org/x/sys/unix"
)

// childLimits handshakes, then prints its rlimits and waits for SIGTERM.
func childLimits() int {
	if _, err := handshake(childVersion()); err != nil {
		return 1
	}
	for _, r := range []struct {
		name string
		res  int
	}{{"data", unix.RLIMIT_DATA}, {"nofile", unix.RLIMIT_NOFILE}, {"nproc", unix.RLIMIT_NPROC}} {
		var lim unix.Rlimit
		if err := unix.Getrlimit(r.res, &lim); err != nil {
			return 1
		}
		fmt.Printf("%s %d\n", r.name, lim.Cur)
	}
	waitSignal(syscall.SIGTERM)
	return 0
}

// allocEnv is how many MiB childAlloc touches.
const allocEnv = "SUBPROCESS_TEST_ALLOC_MIB"

// childAlloc handshakes, then maps SUBPROCESS_TEST_ALLOC_MIB MiB of
// private writable memory (what RLIMIT_DATA counts, like a heap) and
// touches a page of every MiB, prints "allocated" and waits for SIGTERM.
// It maps rather than grows the Go heap so that the race detector's shadow
// memory, which grows with the heap, stays out of the measure. A map past
// the limit fails and the plugin dies of it, as the Go runtime does.
func childAlloc() int {
	if _, err := handshake(childVersion()); err != nil {
		return 1
	}
	mib, _ := strconv.Atoi(os.Getenv(allocEnv))
	b, err := unix.Mmap(-1, 0, mib<<20, unix.PROT_READ|unix.PROT_WRITE, unix.MAP_PRIVATE|unix.MAP_ANONYMOUS)
	if err != nil {
		fmt.Fprintln(os.Stderr, "fatal error: out of memory:", err)
		return 2
	}
	for i := 0; i < len(b); i += 1 << 20 {
		b[i] = 1
	}
	fmt.Println("allocated")
	waitSignal(syscall.SIGTERM)
	runtime.KeepAlive(b)
	return 0
}

func TestRlimitsApplied(t *testing.T) {
	t.Parallel()
	lines := newCollector()
	cfg := &subprocess.Config{Log: zerolog.New(zerolog.NewTestWriter(t)), OnOutput: lines.add,
		Limits: subprocess.Limits{MemoryBytes: 8 << 30, OpenFiles: 300, Processes: 5000}, HandshakeTimeout: time.Minute}
	p, err := subprocess.Bootstrap(t.Context(), childCmd(t, "limits"), cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer p.Stop(context.Background())
	for _, want := range []string{"data 8589934592", "nofile 300", "nproc 5000"} {
		lines.waitFor(t, textIs(want))
	}
}

// A plugin that allocates past its memory limit dies of it; the same
// plugin without the limit does not.
func TestMemoryLimitKillsPlugin(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name  string
		limit int64
		dies  bool
	}{
		{name: "over the limit", limit: 1 << 30, dies: true},
		{name: "no limit", dies: false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			lines := newCollector()
			cfg := &subprocess.Config{Log: zerolog.New(zerolog.NewTestWriter(t)), OnOutput: lines.add,
				Limits: subprocess.Limits{MemoryBytes: tc.limit}, HandshakeTimeout: time.Minute}
			p, err := subprocess.Bootstrap(t.Context(), childCmd(t, "alloc", allocEnv+"=1536"), cfg)
			if err != nil {
				t.Fatal(err)
			}
			defer p.Stop(context.Background())
			if !tc.dies {
				for deadline := time.Now().Add(2 * time.Minute); ; {
					lines.mu.Lock()
					changed := lines.changed
					done := slices.ContainsFunc(lines.lines, textIs("allocated"))
					lines.mu.Unlock()
					if done {
						return
					}
					select {
					case <-changed:
					case <-p.Done():
						t.Fatalf("the plugin without a limit died: %v", p.Err())
					case <-time.After(time.Until(deadline)):
						t.Fatal("the plugin without a limit did not finish allocating")
					}
				}
			}
			select {
			case <-p.Done():
			case <-time.After(60 * time.Second):
				t.Fatal("the plugin outlived its memory limit")
			}
			st := p.ExitStatus()
			var exitErr *vmre.ExitError
			if st.Success() || !errors.As(p.Err(), &exitErr) || !oom(exitErr.Error()) {
				t.Fatalf("exit = %+v (%v), want a failure reporting out of memory", st, p.Err())
			}
			for _, l := range lines.snapshot() {
				if l.Text == "allocated" {
					t.Fatal("the plugin allocated past its limit")
				}
			}
		})
	}
}

// With a cgroup of its own, a plugin and a child that left its process
// group and session are both in the cgroup, and both die with the plugin.
// This needs a writable cgroup v2 directory: the test makes its own under
// /sys/fs/cgroup (or /sys/fs/cgroup/unified) and removes it.
func TestCgroupHoldsWholeTree(t *testing.T) {
	t.Parallel()
	root := testCgroupRoot(t)
	lines := newCollector()
	cfg := &subprocess.Config{Log: zerolog.New(zerolog.NewTestWriter(t)), OnOutput: lines.add, CgroupRoot: root, HandshakeTimeout: time.Minute}
	p, err := subprocess.Bootstrap(t.Context(), childCmd(t, "fork-grandchild"), cfg)
	if err != nil {
		t.Fatal(err)
	}
	dir := p.CgroupDir()
	if filepath.Dir(dir) != root {
		t.Fatalf("cgroup %q is not under %q", dir, root)
	}
	gcLine := lines.waitFor(t, func(l outLine) bool { return strings.HasPrefix(l.Text, "grandchild=") })
	gc, _ := strconv.Atoi(strings.TrimPrefix(gcLine.Text, "grandchild="))
	procs, err := os.ReadFile(filepath.Join(dir, "cgroup.procs"))
	if err != nil {
		t.Fatal(err)
	}
	in := strings.Fields(string(procs))
	for _, pid := range []int{p.Pid(), gc} {
		if !strings.Contains(" "+strings.Join(in, " ")+" ", " "+strconv.Itoa(pid)+" ") {
			t.Fatalf("pid %d not in the cgroup's procs %v", pid, in)
		}
	}
	fds := openPidfds(t, gc)
	p.Stop(context.Background())
	if left := fds.waitExited(subprocess.ExitBound); len(left) != 0 {
		t.Fatalf("still running after the stop: %v", left)
	}
	if _, err := os.Stat(dir); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("cgroup %s left behind: %v", dir, err)
	}
}

// oom reports whether a plugin's output says it ran out of memory.
func oom(out string) bool { return strings.Contains(out, "out of memory") }
