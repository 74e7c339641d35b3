package api

import (
	"fmt"
	"os"
	"path/filepath"

	"github.com/vmre/vmre/internal/token"
)

// TokenFileName is the name of the file [NewTokenFile] writes.
const TokenFileName = "api-token"

// NewTokenFile creates a fresh random API token and writes it, followed by a
// newline, to a file readable only by the current user (0600) in a new
// private directory (0700) under dir; an empty dir means $XDG_RUNTIME_DIR
// if set, else the system temporary directory. It returns the token, the
// file's path and a function that removes the directory.
func NewTokenFile(dir string) (secret, path string, remove func(), err error) {
	secret = token.New()
	if dir == "" {
		dir = os.Getenv("XDG_RUNTIME_DIR")
	}
	private, err := os.MkdirTemp(dir, "vmre-")
	if err != nil {
		return "", "", nil, fmt.Errorf("create token directory: %w", err)
	}
	remove = func() { _ = os.RemoveAll(private) }
	path = filepath.Join(private, TokenFileName)
	if err := os.WriteFile(path, []byte(secret+"\n"), 0o600); err != nil {
		remove()
		return "", "", nil, fmt.Errorf("write token file: %w", err)
	}
	return secret, path, remove, nil
}

// ReadTokenFile reads an API token from path: the file's content without
// surrounding white space. It refuses a token shorter than 16 bytes or with
// white space inside, and, on Unix, a file that others than its owner may
// read or write. Errors about the file's content or mode wrap
// [vmre.ErrInvalidConfig].
func ReadTokenFile(path string) (string, error) {
	return token.ReadFile(path)
}
