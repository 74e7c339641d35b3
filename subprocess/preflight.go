package subprocess

import (
	"errors"
	"fmt"
	"io/fs"
	"os/exec"
	"path/filepath"
	"strings"

	"github.com/vmre/vmre"
	"github.com/vmre/vmre/internal/preflight"
)

// checkPlugin runs the pre-flight checks on the file cmd would execute
// and, on Linux, points cmd at the open, checked file (exec through
// /proc/self/fd), so that what was checked is what runs; an unpinned
// script is pointed at its checked path, which it gets as $0 (see
// preflight's Prepare). The caller closes the returned Executable once
// cmd has started (or failed to). Errors wrap vmre.ErrHandshakeFailed and
// vmre.ErrNotExecutable, vmre.ErrChecksumMismatch or, for a path that
// does not exist, fs.ErrNotExist.
func checkPlugin(cmd *exec.Cmd, pin SHA256) (*preflight.Executable, error) {
	if cmd.Err != nil {
		// exec.Command could not resolve the name: Start would fail with
		// this error anyway.
		return nil, fmt.Errorf("%w: check plugin: %w: %w", vmre.ErrHandshakeFailed, vmre.ErrNotExecutable, cmd.Err)
	}
	exe, err := preflight.Open(execPath(cmd), preflight.Options{SHA256: pin})
	if err != nil {
		return nil, fmt.Errorf("%w: check plugin: %w", vmre.ErrHandshakeFailed, err)
	}
	exe.Prepare(cmd)
	return exe, nil
}

// execPath is the file exec would run for cmd. exec.Command has resolved
// a bare name through $PATH into cmd.Path already; what is left relative
// is resolved by the child after it changed to cmd.Dir, so it is relative
// to cmd.Dir (and never looked up in $PATH).
func execPath(cmd *exec.Cmd) string {
	path := cmd.Path
	if path == "" || filepath.IsAbs(path) {
		return path
	}
	if cmd.Dir != "" {
		path = filepath.Join(cmd.Dir, path)
	}
	if !strings.ContainsRune(path, filepath.Separator) && !strings.ContainsRune(path, '/') {
		// preflight.Open would search $PATH for a bare name.
		path = "." + string(filepath.Separator) + path
	}
	return path
}

// namePlugin makes a start error that names the path Prepare pointed cmd
// at (/proc/self/fd/D/N/NAME or /proc/self/fd/N, meaningless to whoever
// reads the error) name the checked plugin path instead. The error is
// fresh from os.StartProcess (or cmd.Start) and nobody else holds it, so
// it is changed in place, which keeps whatever wraps the *fs.PathError.
func namePlugin(err error, prepared, checked string) error {
	var pathErr *fs.PathError
	if prepared != checked && errors.As(err, &pathErr) && pathErr.Path == prepared {
		pathErr.Path = checked
	}
	return err
}
