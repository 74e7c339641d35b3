//go:build linux

package preflight_test

import (
	"errors"
	"os"
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

// TestFormatCache: an unchanged file is served from the cache; any change
// to the file (content in place, even at the same size, or a swap) is
// checked again; the pin is hashed on every Open, cached or not.
func TestFormatCache(t *testing.T) {
	t.Parallel()
	good := self(t)
	path := write(t, "plugin", good, 0o755)
	cache := preflight.NewFormatCache(4)
	opts := preflight.Options{Cache: cache}

	for range 2 {
		if err := openWith(t, path, opts); err != nil {
			t.Fatal(err)
		}
	}
	if cache.Len() != 1 {
		t.Fatalf("cache holds %d files, want 1", cache.Len())
	}

	// The same file with a wrong pin still fails: the pin is not cached.
	if err := openWith(t, path, preflight.Options{Cache: cache, SHA256: sum([]byte("other"))}); !errors.Is(err, vmre.ErrChecksumMismatch) {
		t.Fatalf("cached file with a wrong pin: %v, want ErrChecksumMismatch", err)
	}

	// Rewritten in place, same size, same inode, other architecture: the
	// header is checked again.
	bad := otherArchELF(t)
	if len(bad) != len(good) {
		t.Skip("otherArchELF changed the size")
	}
	f, err := os.OpenFile(path, os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.WriteAt(bad, 0); err != nil {
		t.Fatal(err)
	}
	f.Close()
	if err := openWith(t, path, opts); !errors.Is(err, vmre.ErrNotExecutable) {
		t.Fatalf("file rewritten in place for another arch: %v, want ErrNotExecutable", err)
	}

	// Swapped for another file at the same path.
	other := filepath.Join(filepath.Dir(path), "other")
	if err := os.WriteFile(other, bad, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, good, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := openWith(t, path, opts); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(other, path); err != nil {
		t.Fatal(err)
	}
	if err := openWith(t, path, opts); !errors.Is(err, vmre.ErrNotExecutable) {
		t.Fatalf("swapped for another arch: %v, want ErrNotExecutable", err)
	}
}

// TestFormatCacheBounded: the cache never holds more than its capacity.
func TestFormatCacheBounded(t *testing.T) {
	t.Parallel()
	good := self(t)
	cache := preflight.NewFormatCache(3)
	for i := range 8 {
		path := write(t, "plugin", good, 0o755)
		if err := openWith(t, path, preflight.Options{Cache: cache}); err != nil {
			t.Fatal(i, err)
		}
		if n := cache.Len(); n > 3 {
			t.Fatalf("after %d files the cache holds %d, want <= 3", i+1, n)
		}
	}
	if cache.Len() != 3 {
		t.Fatalf("cache holds %d, want 3", cache.Len())
	}
}

// TestFormatCacheSkipsScripts: a script's check also depends on its
// interpreter, so it is never cached.
func TestFormatCacheSkipsScripts(t *testing.T) {
	t.Parallel()
	path := write(t, "plugin.sh", []byte("#!/bin/sh\nexit 0\n"), 0o755)
	cache := preflight.NewFormatCache(4)
	e, err := preflight.Open(path, preflight.Options{Cache: cache})
	if err != nil {
		t.Fatal(err)
	}
	e.Close()
	if cache.Len() != 0 {
		t.Fatalf("cache holds %d files after a script, want 0", cache.Len())
	}
}

// TestELFInterpreter: a binary whose ELF interpreter (PT_INTERP) is
// missing or not executable is refused, as the kernel would refuse it
// with a bare "no such file or directory". The interpreter is another
// file, so it is checked again on every Open, also when the binary's
// verdict comes from the cache.
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

	t.Run("cached", func(t *testing.T) {
		t.Parallel()
		interp := write(t, "ld.so", []byte("an interpreter"), 0o755)
		path := write(t, "plugin", preflighttest.HostELF(t, interp), 0o755)
		cache := preflight.NewFormatCache(4)
		opts := preflight.Options{Cache: cache}
		if err := openWith(t, path, opts); err != nil {
			t.Fatal(err)
		}
		if cache.Len() != 1 {
			t.Fatalf("cache holds %d files, want 1", cache.Len())
		}
		if err := os.Remove(interp); err != nil {
			t.Fatal(err)
		}
		if err := openWith(t, path, opts); !errors.Is(err, vmre.ErrNotExecutable) || !strings.Contains(err.Error(), "not found") {
			t.Fatalf("cached binary whose interpreter is gone: %v, want ErrNotExecutable", err)
		}
	})
}
