//go:build linux

package procfd_test

import (
	"os"
	"testing"

	"github.com/prometheus/procfs"
	"github.com/vmre/vmre/internal/procfd"
)

// TestCountMatchesProcfs: the count, of this process by its pid and as
// the calling process, is the one prometheus/procfs lists, and a process
// that does not exist has none.
func TestCountMatchesProcfs(t *testing.T) {
	t.Parallel()
	self, err := procfs.Self()
	if err != nil {
		t.Fatal(err)
	}
	for _, pid := range []int{os.Getpid(), 0} {
		got, ok := procfd.Count(pid)
		want, err := self.FileDescriptorsLen()
		// The two reads may see a descriptor the other opened for its
		// listing, and other tests' descriptors come and go.
		if !ok || err != nil || got < want-2 || got > want+2 {
			t.Errorf("Count(%d) = %d, %v; procfs %d, %v", pid, got, ok, want, err)
		}
	}
	if n, ok := procfd.Count(1 << 30); ok {
		t.Errorf("Count of a process that does not exist = %d, true", n)
	}
}
