//go:build linux

package preflight_test

import (
	"encoding/binary"
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

// TestELFHeadersPastFirstPage: the checks read what exec reads wherever it
// sits in the file, not only in the first page: an interpreter path far
// into the file is found and checked, and one that runs past the end of
// the file, or a header cut short, is a malformed ELF.
func TestELFHeadersPastFirstPage(t *testing.T) {
	t.Parallel()
	missing := filepath.Join(t.TempDir(), "ld-far.so.1")
	// HostELF writes one Prog64 right after the 64-byte file header; its
	// Off field is 8 bytes into it.
	const progOff, offField = 64, 64 + 8
	head := preflighttest.HostELF(t, missing)[:progOff+56]
	far := func(at int, tail string) []byte {
		b := make([]byte, at)
		copy(b, head)
		binary.LittleEndian.PutUint64(b[offField:], uint64(at))
		return append(b, tail...)
	}
	for _, tt := range []struct {
		name     string
		file     []byte
		wantText string
	}{
		{"interpreter past the first page", far(3*4096+5, missing+"\x00"), "ELF interpreter " + missing + " not found"},
		{"interpreter past the end of the file", far(3*4096+5, missing[:4]), "malformed ELF: read interpreter: unexpected EOF"},
		{"header cut short", head[:40], "malformed ELF: unexpected EOF"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			err := openWith(t, write(t, "plugin", tt.file, 0o755), preflight.Options{})
			if !errors.Is(err, vmre.ErrNotExecutable) || !strings.Contains(err.Error(), tt.wantText) {
				t.Fatalf("err = %v, want ErrNotExecutable saying %q", err, tt.wantText)
			}
		})
	}
}
