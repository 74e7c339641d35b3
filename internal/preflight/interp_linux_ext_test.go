//go:build linux

package preflight_test

import (
	"errors"
	"path/filepath"
	"strings"
	"testing"

	"github.com/vmre/vmre"
	"github.com/vmre/vmre/internal/preflight"
	"github.com/vmre/vmre/internal/preflight/preflighttest"
)

func openWith(t *testing.T, path string, opts preflight.Options) error {
	t.Helper()
	e, err := preflight.Open(path, opts)
	if err == nil {
		if e.Format != "elf" {
			t.Errorf("Format = %q, want elf", e.Format)
		}
		e.Close()
	}
	return err
}

// TestELFInterpreter: a binary whose ELF interpreter (PT_INTERP) is
// missing or not executable is refused, as the kernel would refuse it
// with a bare "no such file or directory".
func TestELFInterpreter(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	interp := write(t, "ld.so", []byte("an interpreter"), 0o755)
	notExec := write(t, "ld-noexec.so", []byte("an interpreter"), 0o644)
	missing := filepath.Join(dir, "ld-musl-x86_64.so.1")
	for _, tc := range []struct {
		name, interp, wantText string
	}{
		{"present", interp, ""},
		{"missing", missing, "ELF interpreter " + missing + " not found"},
		{"not executable", notExec, "ELF interpreter " + notExec + " is not an executable file"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			err := openWith(t, write(t, "plugin", preflighttest.HostELF(t, tc.interp), 0o755), preflight.Options{})
			if tc.wantText == "" {
				if err != nil {
					t.Fatal(err)
				}
				return
			}
			if !errors.Is(err, vmre.ErrNotExecutable) || !strings.Contains(err.Error(), tc.wantText) {
				t.Fatalf("err = %v, want ErrNotExecutable saying %q", err, tc.wantText)
			}
		})
	}
}
