//go:build linux

package engine_test

import (
	"context"
	"os"
	"os/exec"
	"runtime"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/rs/zerolog"
	"github.com/vmre/vmre/engine"
	"github.com/vmre/vmre/subprocess"
)

// procRSS reads a process's resident bytes from /proc/PID/statm.
func procRSS(t *testing.T, pid int) int64 {
	t.Helper()
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/statm")
	if err != nil {
		t.Fatal(err)
	}
	f := strings.Fields(string(b))
	pages, err := strconv.ParseInt(f[1], 10, 64)
	if err != nil {
		t.Fatal(err)
	}
	return pages * int64(os.Getpagesize())
}

func procFDs(t *testing.T, pid int) int {
	t.Helper()
	ents, err := os.ReadDir("/proc/" + strconv.Itoa(pid) + "/fd")
	if err != nil {
		t.Fatal(err)
	}
	return len(ents)
}

// The usage of a plugin and its two children, sampled by the engine,
// against what /proc says of the same three processes.
func TestUsageOfProcessTree(t *testing.T) {
	t.Parallel()
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	launcher := engine.NewSubprocessLauncher(subprocess.Config{Log: zerolog.New(zerolog.NewTestWriter(t)), HandshakeTimeout: 20 * time.Second},
		func(spec engine.Spec) (*exec.Cmd, error) {
			cmd := subprocess.NewCmd(spec.Path, spec.Args...)
			cmd.Env = append(os.Environ(), childEnv+"=alloc-fork")
			return cmd, nil
		})
	e := newEngine(t, launcher, func(c *engine.Config) { c.SampleInterval = 100 * time.Millisecond })
	w := watchFromSnapshot(t, e)
	ctx, cancel := context.WithTimeout(t.Context(), 60*time.Second)
	defer cancel()
	rt, err := e.Launch(ctx, engine.Spec{Name: "alloc", Path: self})
	if err != nil {
		t.Fatal(err)
	}
	// The plugin prints its children before its handshake, but the line
	// may reach the output ring after Launch returns: follow until it
	// arrives.
	lines, follower, err := e.TailOutput(rt.ID, 0, true, engine.OutputFilter{})
	if err != nil {
		t.Fatal(err)
	}
	defer follower.Close()
	pids := []int{rt.Pid}
	for len(pids) == 1 {
		for _, l := range lines {
			if rest, ok := strings.CutPrefix(string(l.Text), "children "); ok {
				for _, f := range strings.Fields(rest) {
					pid, _ := strconv.Atoi(f)
					pids = append(pids, pid)
				}
			}
		}
		if len(pids) > 1 {
			break
		}
		if lines, _, err = follower.Next(ctx); err != nil {
			t.Fatalf("no children line: %v", err)
		}
	}
	if len(pids) != 3 {
		t.Fatalf("pids = %v, want the plugin and two children", pids)
	}
	// Two samples, so that the second has a CPU percentage.
	var u *engine.Usage
	for n := 0; n < 2; {
		c, err := w.Next(ctx)
		if err != nil {
			t.Fatalf("no usage sample: %v", err)
		}
		if c.Kind == engine.ChangeUsage && c.Runtime.ID == rt.ID {
			if c.Event != (engine.Event{}) {
				t.Fatalf("usage change with an event: %+v", c.Event)
			}
			u = c.Runtime.Usage
			n++
		}
	}
	var rss int64
	fds := 0
	for _, pid := range pids {
		rss += procRSS(t, pid)
		fds += procFDs(t, pid)
	}
	t.Logf("sampled %+v; /proc: rss %d fds %d", *u, rss, fds)
	switch {
	case u.Processes != 3:
		t.Errorf("processes = %d, want 3", u.Processes)
	case u.RSSBytes < allocMiB<<20 || u.RSSBytes > rss*5/4 || u.RSSBytes < rss*3/4:
		t.Errorf("rss = %d, want at least %d MiB and within 25%% of /proc's %d", u.RSSBytes, allocMiB, rss)
	case u.Threads < 3:
		t.Errorf("threads = %d, want at least one per process", u.Threads)
	case u.OpenFDs < 3*3 || u.OpenFDs > fds+8 || u.OpenFDs < fds-8:
		t.Errorf("open fds = %d, want near /proc's %d", u.OpenFDs, fds)
	case u.CPUSeconds <= 0 || u.CPUSeconds > time.Since(rt.StartedAt).Seconds()*float64(runtime.NumCPU()):
		t.Errorf("cpu seconds = %f, want > 0 and at most the wall time on every core", u.CPUSeconds)
	case u.CPUPercent < 0 || u.CPUPercent > 100*float64(runtime.NumCPU()):
		t.Errorf("cpu percent = %f", u.CPUPercent)
	}
	if got, _, _ := e.Get(rt.ID); got.Usage == nil || got.Usage.Processes != 3 {
		t.Errorf("Get: usage %+v, want the sample", got.Usage)
	}
	if _, err := e.Stop(ctx, rt.ID); err != nil {
		t.Fatal(err)
	}
	if got, _, _ := e.Get(rt.ID); got.Usage != nil {
		t.Errorf("usage after exit = %+v, want none", got.Usage)
	}
}
