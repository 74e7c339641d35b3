//go:build unix

package preflight_test

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"github.com/vmre/vmre"
	"github.com/vmre/vmre/internal/preflight"
)

func TestOpenUnix(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name       string
		path       func(t *testing.T) string
		wantErr    error
		wantText   string
		wantFormat string
	}{
		{
			name:     "not executable",
			path:     func(t *testing.T) string { return write(t, "plugin", self(t), 0o644) },
			wantErr:  vmre.ErrNotExecutable,
			wantText: "no execute permission",
		},
		{
			name: "named pipe does not block",
			path: func(t *testing.T) string {
				p := filepath.Join(t.TempDir(), "fifo")
				if err := syscall.Mkfifo(p, 0o755); err != nil {
					t.Skip(err)
				}
				return p
			},
			wantErr:  vmre.ErrNotExecutable,
			wantText: "not a regular file (named pipe)",
		},
		{
			name:       "script",
			path:       func(t *testing.T) string { return write(t, "plugin.sh", []byte("#!/bin/sh\necho hi\n"), 0o755) },
			wantFormat: "script",
		},
		{
			name:       "script with arguments to its interpreter",
			path:       func(t *testing.T) string { return write(t, "plugin.sh", []byte("#! /bin/sh -e\necho hi\n"), 0o755) },
			wantFormat: "script",
		},
		{
			name:     "script with a missing interpreter",
			path:     func(t *testing.T) string { return write(t, "plugin.sh", []byte("#!/nonexistent/sh\n"), 0o755) },
			wantErr:  vmre.ErrNotExecutable,
			wantText: "#! interpreter",
		},
		{
			// The kernel keeps the "\r": it would look for "/bin/sh\r".
			name:     "script with CRLF line endings",
			path:     func(t *testing.T) string { return write(t, "plugin.sh", []byte("#!/bin/sh\r\necho hi\r\n"), 0o755) },
			wantErr:  vmre.ErrNotExecutable,
			wantText: "CRLF (Windows) line endings",
		},
		{
			// Here it would pass "-e\r" to the interpreter.
			name:     "script with CRLF line endings and an argument",
			path:     func(t *testing.T) string { return write(t, "plugin.sh", []byte("#!/bin/sh -e\r\necho hi\r\n"), 0o755) },
			wantErr:  vmre.ErrNotExecutable,
			wantText: "CRLF (Windows) line endings",
		},
		{
			// exec fails with "no such file or directory" for the plugin,
			// though the fault is in the interpreter script's first line.
			name: "script whose interpreter is a CRLF script",
			path: func(t *testing.T) string {
				interp := write(t, "interp", []byte("#!/bin/sh\r\nexec /bin/sh \"$@\"\r\n"), 0o755)
				return write(t, "plugin.sh", []byte("#!"+interp+"\necho hi\n"), 0o755)
			},
			wantErr:  vmre.ErrNotExecutable,
			wantText: "is itself a script",
		},
		{
			name: "script whose interpreter is a script",
			path: func(t *testing.T) string {
				interp := write(t, "interp", []byte("#!/bin/sh\nexec /bin/sh \"$@\"\n"), 0o755)
				return write(t, "plugin.sh", []byte("#!"+interp+"\necho hi\n"), 0o755)
			},
			wantFormat: "script",
		},
		{
			name:       "script with a tab before the argument",
			path:       func(t *testing.T) string { return write(t, "plugin.sh", []byte("#!/bin/sh\t-e\necho hi\n"), 0o755) },
			wantFormat: "script",
		},
		{
			name:     "script without an interpreter",
			path:     func(t *testing.T) string { return write(t, "plugin.sh", []byte("#!\n"), 0o755) },
			wantErr:  vmre.ErrNotExecutable,
			wantText: "names no interpreter",
		},
		{
			name: "symlink to a binary",
			path: func(t *testing.T) string {
				target := write(t, "plugin", self(t), 0o755)
				link := filepath.Join(t.TempDir(), "link")
				if err := os.Symlink(target, link); err != nil {
					t.Fatal(err)
				}
				return link
			},
			wantFormat: formatOf(self(t)),
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			e, err := preflight.Open(tt.path(t), preflight.Options{})
			if e != nil {
				defer e.Close()
			}
			if !errors.Is(err, tt.wantErr) {
				t.Fatalf("Open error = %v, want %v", err, tt.wantErr)
			}
			if err != nil && !strings.Contains(err.Error(), tt.wantText) {
				t.Fatalf("error %q does not contain %q", err, tt.wantText)
			}
			if err == nil && e.Format != tt.wantFormat {
				t.Fatalf("Format = %q, want %q", e.Format, tt.wantFormat)
			}
		})
	}
}

// TestOpenLooksUpPath: a bare name is found through $PATH, as exec.Command
// does.
func TestOpenLooksUpPath(t *testing.T) {
	t.Parallel()
	e, err := preflight.Open("sh", preflight.Options{})
	if err != nil {
		t.Skipf("no sh on PATH: %v", err)
	}
	defer e.Close()
	if !filepath.IsAbs(e.Path) {
		t.Fatalf("Path %q is not absolute", e.Path)
	}
}
