package main

import (
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
)

// TestRunDoesNotPassInheritedDescriptors starts `vmre run` with an extra
// descriptor inherited without close-on-exec (a file) and checks that
// the plugin it launches does not hold it.
func TestRunDoesNotPassInheritedDescriptors(t *testing.T) {
	inherited, err := os.Create(filepath.Join(t.TempDir(), "inherited"))
	if err != nil {
		t.Fatal(err)
	}
	defer inherited.Close()
	// As fds 3 to 10: the launch puts a pinned binary on the plugin's fd 3,
	// which would hide an inherited fd 3 alone.
	p := startRunInheriting(t, []*os.File{inherited, inherited, inherited, inherited, inherited, inherited, inherited, inherited})
	pid := p.waitFor(t, "runtime running", "").Pid
	fds, err := os.ReadDir("/proc/" + strconv.Itoa(pid) + "/fd")
	if err != nil {
		t.Fatal(err)
	}
	for _, fd := range fds {
		target, err := os.Readlink("/proc/" + strconv.Itoa(pid) + "/fd/" + fd.Name())
		if err == nil && strings.HasSuffix(target, inherited.Name()) {
			t.Errorf("plugin %d holds vmre's inherited descriptor as fd %s (%s)", pid, fd.Name(), target)
		}
	}
	p.signal(t, syscall.SIGTERM)
	if code := p.exitCode(t); code != 0 {
		t.Errorf("exit code %d after SIGTERM", code)
	}
}
