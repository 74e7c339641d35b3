//go:build linux

package preflight

import (
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"testing"

	"github.com/vmre/vmre/internal/preflight/preflighttest"
)

// TestCheckFormatKeepsNoBuffer: what checkFormat returns stays as it was
// once the next check has read another file into the buffer the first
// one handed back.
func TestCheckFormatKeepsNoBuffer(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	open := func(interp string) *os.File {
		path := filepath.Join(dir, filepath.Base(interp)+".plugin")
		if err := os.WriteFile(path, preflighttest.HostELF(t, interp), 0o755); err != nil {
			t.Fatal(err)
		}
		f, err := os.Open(path)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { f.Close() })
		return f
	}
	first, second := "/lib/"+strings.Repeat("a", 40), "/lib/"+strings.Repeat("b", 40)
	a, b := open(first), open(second)
	for range 100 {
		va, err := checkFormat(a, "linux", runtime.GOARCH)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := checkFormat(b, "linux", runtime.GOARCH); err != nil {
			t.Fatal(err)
		}
		if va.interp != first {
			t.Fatalf("the first file's interpreter reads %q after the second check, want %q", va.interp, first)
		}
	}
}
