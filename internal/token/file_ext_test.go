package token_test

import (
	"errors"
	"os"
	"path/filepath"
	"testing"

	"github.com/vmre/vmre"
	"github.com/vmre/vmre/internal/token"
)

func writeToken(t *testing.T, path, content string, mode os.FileMode) {
	t.Helper()
	// Written beside and renamed over, as Nomad templates and most
	// rotation tools replace a file.
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, []byte(content), mode); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(tmp, mode); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, path); err != nil {
		t.Fatal(err)
	}
}

func TestFileFollowsRotation(t *testing.T) {
	t.Parallel()
	path := filepath.Join(t.TempDir(), "token")
	first, second := token.New(), token.New()
	writeToken(t, path, first+"\n", 0o600)
	f, err := token.OpenFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if got, err := f.Token(); got != first || err != nil {
		t.Fatalf("Token() = %q, %v; want the first token", got, err)
	}
	writeToken(t, path, second, 0o600)
	if got, err := f.Token(); got != second || err != nil {
		t.Fatalf("after rotation Token() = %q, %v; want the second token", got, err)
	}

	// A replacement that is refused withdraws the old token too.
	tests := []struct {
		name    string
		content string
		mode    os.FileMode
	}{
		{name: "too short", content: "short", mode: 0o600},
		{name: "readable by others", content: token.New(), mode: 0o644},
	}
	for _, tt := range tests {
		writeToken(t, path, tt.content, tt.mode)
		if got, err := f.Token(); got != "" || !errors.Is(err, vmre.ErrInvalidConfig) {
			t.Errorf("%s: Token() = %q, %v; want \"\" and ErrInvalidConfig", tt.name, got, err)
		}
	}
	if err := os.Remove(path); err != nil {
		t.Fatal(err)
	}
	if got, err := f.Token(); got != "" || err == nil {
		t.Errorf("removed file: Token() = %q, %v; want \"\" and an error", got, err)
	}
	writeToken(t, path, first, 0o600)
	if got, err := f.Token(); got != first || err != nil {
		t.Fatalf("restored: Token() = %q, %v; want the first token", got, err)
	}
}

func TestOpenFileRefuses(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	tests := []struct {
		name    string
		content string
		mode    os.FileMode
		wantErr error
	}{
		{name: "short", content: "abc", mode: 0o600, wantErr: vmre.ErrInvalidConfig},
		{name: "world readable", content: token.New(), mode: 0o644, wantErr: vmre.ErrInvalidConfig},
		{name: "white space inside", content: "abcdefgh ijklmnopq", mode: 0o600, wantErr: vmre.ErrInvalidConfig},
		{name: "missing", wantErr: os.ErrNotExist},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			path := filepath.Join(dir, tt.name)
			if tt.content != "" {
				writeToken(t, path, tt.content, tt.mode)
			}
			if _, err := token.OpenFile(path); !errors.Is(err, tt.wantErr) {
				t.Fatalf("OpenFile: %v, want %v", err, tt.wantErr)
			}
		})
	}
}
