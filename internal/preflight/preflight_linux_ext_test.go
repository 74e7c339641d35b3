//go:build linux

package preflight_test

import (
	"bufio"
	"bytes"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/vmre/vmre/internal/preflight"
)

// swap atomically replaces path with a file holding data, as an attacker
// racing the launch would.
func swap(t *testing.T, path string, data []byte) {
	t.Helper()
	tmp := path + ".new"
	if err := os.WriteFile(tmp, data, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, path); err != nil {
		t.Fatal(err)
	}
}

func run(t *testing.T, cmd *exec.Cmd, e *preflight.Executable) string {
	t.Helper()
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	if err := e.Close(); err != nil { // the child has its own descriptor now
		t.Fatal(err)
	}
	if err := cmd.Wait(); err != nil {
		t.Fatalf("%v: %s", err, out.String())
	}
	return strings.TrimSpace(out.String())
}

// TestPrepareRunsCheckedScript: the path is swapped after the check; the
// checked script is what runs. Without Prepare the swapped one would.
func TestPrepareRunsCheckedScript(t *testing.T) {
	t.Parallel()
	path := write(t, "plugin.sh", []byte("#!/bin/sh\necho checked\n"), 0o755)
	e, err := preflight.Open(path, preflight.Options{SHA256: digest(sum([]byte("#!/bin/sh\necho checked\n")))})
	if err != nil {
		t.Fatal(err)
	}
	swap(t, path, []byte("#!/bin/sh\necho swapped\n"))

	cmd := exec.Command(path)
	e.Prepare(cmd)
	// No link for a script: its interpreter opens the path after the exec.
	if cmd.Path != "/proc/self/fd/3" {
		t.Fatalf("Path = %q, want /proc/self/fd/3", cmd.Path)
	}
	if got := run(t, cmd, e); got != "checked" {
		t.Fatalf("ran %q, want the checked script", got)
	}
	if got, _ := exec.Command(path).Output(); strings.TrimSpace(string(got)) != "swapped" {
		t.Fatalf("control: running the path by name gave %q, want the swapped script", got)
	}
}

// TestPrepareScriptDollarZero: an unpinned script is executed by its
// checked path, so $0 names it (and "$(dirname "$0")" its directory) and
// it inherits no descriptor; a pinned one runs through the descriptor, so
// that the pinned contents are what runs, and $0 is /proc/self/fd/N.
func TestPrepareScriptDollarZero(t *testing.T) {
	t.Parallel()
	body := []byte("#!/bin/sh\necho \"$0\"\n")
	path := write(t, "plugin.sh", body, 0o755)
	for _, tc := range []struct {
		name, pin, want string
		wantExtra       int
	}{
		{"unpinned", "", path, 0},
		{"pinned", sum(body), "/proc/self/fd/3", 1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			e, err := preflight.Open(path, preflight.Options{SHA256: digest(tc.pin)})
			if err != nil {
				t.Fatal(err)
			}
			cmd := exec.Command(path)
			e.Prepare(cmd)
			if len(cmd.ExtraFiles) != tc.wantExtra {
				t.Errorf("ExtraFiles = %d, want %d", len(cmd.ExtraFiles), tc.wantExtra)
			}
			if got := run(t, cmd, e); got != tc.want {
				t.Errorf("$0 = %q, want %q", got, tc.want)
			}
		})
	}
}

// TestPrepareRunsCheckedBinary: the same for a real binary, with argv[0]
// kept as the path the user gave, and with an ExtraFiles entry already in
// place, which Prepare leaves alone.
func TestPrepareRunsCheckedBinary(t *testing.T) {
	t.Parallel()
	exe := self(t)
	path := write(t, "plugin", exe, 0o755)
	e, err := preflight.Open(path, preflight.Options{SHA256: digest(sum(exe))})
	if err != nil {
		t.Fatal(err)
	}
	swap(t, path, []byte("#!/bin/sh\necho swapped\n"))
	if err := os.Remove(path); err != nil { // even a deleted path runs
		t.Fatal(err)
	}

	r, w, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	defer w.Close()
	cmd := exec.Command(path)
	cmd.Env = append(os.Environ(), childKey+"=hello")
	cmd.ExtraFiles = []*os.File{w}
	e.Prepare(cmd)
	// A link named like the plugin to the descriptor, so that the process
	// is named "plugin", not "N".
	target, err := os.Readlink(cmd.Path)
	if err != nil || !strings.HasPrefix(target, "/proc/self/fd/") || filepath.Base(cmd.Path) != "plugin" || len(cmd.ExtraFiles) != 1 {
		t.Fatalf("Path = %q -> %q (%v), ExtraFiles = %d; want a link named plugin to /proc/self/fd/N and the one existing extra file",
			cmd.Path, target, err, len(cmd.ExtraFiles))
	}
	if got, want := run(t, cmd, e), "checked binary ran as "+path+" named plugin"; got != want {
		t.Fatalf("ran %q, want %q", got, want)
	}
	if _, err := os.Lstat(cmd.Path); !os.IsNotExist(err) {
		t.Errorf("the link is still there after Close (%v)", err)
	}
}

// TestPrepareBinaryHoldsNoDescriptor: a binary executed through its
// checked descriptor does not keep that descriptor, with or without
// extra files (which move descriptors around in the child before the
// exec).
func TestPrepareBinaryHoldsNoDescriptor(t *testing.T) {
	t.Parallel()
	exe := self(t)
	path := write(t, "plugin", exe, 0o755)
	for _, tc := range []struct {
		name  string
		extra int
	}{
		{"no extra files", 0},
		{"one extra file", 1},
		{"forty extra files (the descriptor is copied above them)", 40},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			e, err := preflight.Open(path, preflight.Options{SHA256: digest(sum(exe))})
			if err != nil {
				t.Fatal(err)
			}
			cmd := exec.Command(path)
			cmd.Env = append(os.Environ(), childKey+"=fds")
			for range tc.extra {
				r, w, err := os.Pipe()
				if err != nil {
					t.Fatal(err)
				}
				t.Cleanup(func() { r.Close(); w.Close() })
				cmd.ExtraFiles = append(cmd.ExtraFiles, w)
			}
			e.Prepare(cmd)
			out := run(t, cmd, e)
			for line := range strings.Lines(out) {
				fd, target, ok := strings.Cut(strings.TrimSpace(line), " -> ")
				if !ok {
					t.Fatalf("child said %q", line)
				}
				if strings.HasPrefix(target, path) {
					t.Errorf("the plugin holds descriptor %s -> %s", fd, target)
				}
			}
		})
	}
}

// TestPrepareAfterClose falls back to the path.
func TestPrepareAfterClose(t *testing.T) {
	t.Parallel()
	path := write(t, "plugin.sh", []byte("#!/bin/sh\necho hi\n"), 0o755)
	e, err := preflight.Open(path, preflight.Options{})
	if err != nil {
		t.Fatal(err)
	}
	_ = e.Close()
	cmd := exec.Command(filepath.Base(path))
	e.Prepare(cmd)
	if cmd.Path != path || len(cmd.ExtraFiles) != 0 {
		t.Fatalf("Path = %q, ExtraFiles = %d", cmd.Path, len(cmd.ExtraFiles))
	}
}

// TestPrepareSweepsKilledEnginesLinks: an engine killed between Prepare
// and Close leaves its link's directory; the next engine to prepare a
// launch in the same place removes it, and only it: not a fresh
// directory of a dead pid, an old one of a live pid, another name, or a
// file. A live pid's directory is not even read (its access time stays):
// a busy engine's holds hundreds.
func TestPrepareSweepsKilledEnginesLinks(t *testing.T) {
	t.Parallel()
	base := t.TempDir()
	env := append(os.Environ(), "XDG_RUNTIME_DIR="+base)

	killed := exec.Command(os.Args[0])
	killed.Env = append(env, childKey+"=prepare-hold")
	stdin, err := killed.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	defer stdin.Close()
	out, err := killed.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := killed.Start(); err != nil {
		t.Fatal(err)
	}
	dir, err := bufio.NewReader(out).ReadString('\n')
	if err != nil {
		t.Fatal(err)
	}
	left := strings.TrimSpace(dir)
	if filepath.Dir(left) != base {
		t.Fatalf("Prepare made its link in %q, want a directory in %s", left, base)
	}
	_ = killed.Process.Kill()
	_ = killed.Wait()
	deadPid := killed.Process.Pid

	old := time.Now().Add(-2 * time.Minute)
	keep := []string{
		filepath.Join(base, fmt.Sprintf("vmre-exec-%d-fresh", deadPid)),       // too young
		filepath.Join(base, fmt.Sprintf("vmre-exec-%d-launching", deadPid)),   // a link made in it lately (another pid namespace)
		filepath.Join(base, fmt.Sprintf("vmre-exec-%d-live", os.Getpid())),    // its engine runs
		filepath.Join(base, fmt.Sprintf("other-%d-dir", deadPid)),             // not a link directory
		filepath.Join(base, fmt.Sprintf("vmre-exec-%d-x", deadPid)) + ".file", // a file
	}
	for _, dir := range keep[:4] {
		if err := os.Mkdir(dir, 0o700); err != nil {
			t.Fatal(err)
		}
	}
	for _, dir := range []string{filepath.Join(keep[1], "7"), filepath.Join(keep[2], "9")} {
		if err := os.Mkdir(dir, 0o700); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.WriteFile(keep[4], nil, 0o600); err != nil {
		t.Fatal(err)
	}
	// The killed engine's directory and the one per descriptor in it, as a
	// minute after its last launch.
	subs, err := filepath.Glob(filepath.Join(left, "*"))
	if err != nil || len(subs) != 1 {
		t.Fatalf("the killed engine's directory holds %v (%v), want the one of its descriptor", subs, err)
	}
	for _, path := range append(append(subs, left), keep[1:]...) {
		if err := os.Chtimes(path, old, old); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.Chtimes(filepath.Join(keep[1], "7"), time.Now(), time.Now()); err != nil {
		t.Fatal(err)
	}
	readsUpdateAtime := atimeAfterRead(t, filepath.Join(t.TempDir(), "probe"), old)

	next := exec.Command(os.Args[0])
	next.Env = append(env, childKey+"=prepare")
	if b, err := next.CombinedOutput(); err != nil {
		t.Fatalf("%v: %s", err, b)
	}
	if _, err := os.Lstat(left); !os.IsNotExist(err) {
		t.Errorf("the killed engine's %s is still there (%v)", left, err)
	}
	for _, path := range keep {
		if _, err := os.Lstat(path); err != nil {
			t.Errorf("%s was removed: %v", path, err)
		}
	}
	if readsUpdateAtime {
		if at := atime(t, keep[2]); !at.Equal(old) {
			t.Errorf("the live engine's directory was read: access time %v, want %v", at, old)
		}
	} else {
		t.Log("reading a directory does not update its access time here (noatime?): whether the live engine's was read is not checked")
	}
	// And the next engine's own, which it left to the engine after it.
	ents, _ := os.ReadDir(base)
	if len(ents) != len(keep)+1 {
		names := make([]string, 0, len(ents))
		for _, e := range ents {
			names = append(names, e.Name())
		}
		t.Errorf("%s holds %v, want the %d kept and the next engine's", base, names, len(keep))
	}
	nexts, _ := filepath.Glob(filepath.Join(base, fmt.Sprintf("vmre-exec-%d-*", next.Process.Pid)))
	if len(nexts) != 1 {
		t.Fatalf("the next engine's directories: %v, want one", nexts)
	}
	if links := linksIn(t, nexts[0]); len(links) != 0 {
		t.Errorf("the next engine closed its launch but left %v", links)
	}
}

// atimeAfterRead makes the directory dir with access and modification
// times t, reads it and reports whether that updated its access time, as
// relatime and strictatime mounts do.
func atimeAfterRead(tb testing.TB, dir string, t time.Time) bool {
	tb.Helper()
	if err := os.Mkdir(dir, 0o700); err != nil {
		tb.Fatal(err)
	}
	if err := os.Chtimes(dir, t, t); err != nil {
		tb.Fatal(err)
	}
	if _, err := os.ReadDir(dir); err != nil {
		tb.Fatal(err)
	}
	return !atime(tb, dir).Equal(t)
}

// atime returns path's access time.
func atime(tb testing.TB, path string) time.Time {
	tb.Helper()
	var st syscall.Stat_t
	if err := syscall.Lstat(path, &st); err != nil {
		tb.Fatal(err)
	}
	return time.Unix(st.Atim.Unix())
}

// linksIn returns the links in dir's subdirectories.
func linksIn(t *testing.T, dir string) []string {
	t.Helper()
	var links []string
	err := filepath.WalkDir(dir, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if !d.IsDir() {
			links = append(links, path)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return links
}

// TestPrepareLinkDirectory: launches make their links in one directory
// of the process, reached through its descriptor, and leave nothing in it
// once closed; one whose directory was deleted makes a new one, and one
// whose directory's name was taken over by another directory still uses
// its own. Not parallel: it renames and deletes the directory every
// launch of this process links in.
func TestPrepareLinkDirectory(t *testing.T) {
	exe := self(t)
	path := write(t, "plugin", exe, 0o755)
	launch := func() (dir string) {
		t.Helper()
		e, err := preflight.Open(path, preflight.Options{})
		if err != nil {
			t.Fatal(err)
		}
		cmd := exec.Command(path)
		cmd.Env = append(os.Environ(), childKey+"=hello")
		e.Prepare(cmd)
		via := filepath.Dir(filepath.Dir(cmd.Path))
		if !strings.HasPrefix(via, "/proc/self/fd/") || filepath.Base(cmd.Path) != "plugin" {
			t.Fatalf("Path = %q, want /proc/self/fd/D/N/plugin", cmd.Path)
		}
		if dir, err = os.Readlink(via); err != nil {
			t.Fatal(err)
		}
		if got, want := run(t, cmd, e), "checked binary ran as "+path+" named plugin"; got != want {
			t.Fatalf("ran %q, want %q", got, want)
		}
		return strings.TrimSuffix(dir, " (deleted)")
	}
	first := launch()
	if again := launch(); again != first {
		t.Errorf("the second launch linked in %s, the first in %s: want one directory", again, first)
	}
	if links := linksIn(t, first); len(links) != 0 {
		t.Errorf("left after the launches: %v", links)
	}

	// Its name taken over: the launch still links in the directory it holds.
	moved := first + ".moved"
	if err := os.Rename(first, moved); err != nil {
		t.Fatal(err)
	}
	if err := os.Mkdir(first, 0o777); err != nil {
		t.Fatal(err)
	}
	if dir := launch(); dir != moved {
		t.Errorf("after its directory was renamed, the launch linked in %s, want %s", dir, moved)
	}
	if links := linksIn(t, first); len(links) != 0 {
		t.Errorf("a link was made in the directory that took the name over: %v", links)
	}

	// Deleted: the next launch makes a new one.
	if err := os.RemoveAll(moved); err != nil {
		t.Fatal(err)
	}
	if dir := launch(); dir == moved || dir == first || filepath.Dir(dir) != filepath.Dir(first) {
		t.Errorf("after its directory was deleted, the launch linked in %s, want a new directory next to %s", dir, first)
	}
}

// TestRemoveLinkDir: RemoveLinkDir keeps the directory while a launch's
// link is in it, and that launch still runs and removes its link; once
// no link is left it removes the directory, and the next launch makes a
// new one. Not parallel: it removes the directory every launch of this
// process links in.
func TestRemoveLinkDir(t *testing.T) {
	path := write(t, "plugin", self(t), 0o755)
	prepare := func() (*preflight.Executable, *exec.Cmd, string) {
		t.Helper()
		e, err := preflight.Open(path, preflight.Options{})
		if err != nil {
			t.Fatal(err)
		}
		cmd := exec.Command(path)
		cmd.Env = append(os.Environ(), childKey+"=hello")
		e.Prepare(cmd)
		dir, err := os.Readlink(filepath.Dir(filepath.Dir(cmd.Path)))
		if err != nil {
			t.Fatal(err)
		}
		return e, cmd, dir
	}
	want := "checked binary ran as " + path + " named plugin"

	e, cmd, dir := prepare()
	preflight.RemoveLinkDir()
	if _, err := os.Lstat(dir); err != nil {
		t.Fatalf("the directory of a prepared launch's link was removed: %v", err)
	}
	if got := run(t, cmd, e); got != want {
		t.Fatalf("ran %q, want %q", got, want)
	}
	preflight.RemoveLinkDir()
	if _, err := os.Lstat(dir); !os.IsNotExist(err) {
		t.Fatalf("%s is still there after the launch closed (%v)", dir, err)
	}

	e, cmd, next := prepare()
	if next == dir || filepath.Dir(next) != filepath.Dir(dir) {
		t.Errorf("after RemoveLinkDir the launch linked in %s, want a new directory next to %s", next, dir)
	}
	if got := run(t, cmd, e); got != want {
		t.Fatalf("ran %q, want %q", got, want)
	}
	preflight.RemoveLinkDir()
	if _, err := os.Lstat(next); !os.IsNotExist(err) {
		t.Errorf("%s is still there (%v)", next, err)
	}
	preflight.RemoveLinkDir() // nothing left: no effect
}
