package token

import (
	"fmt"
	"os"
	"runtime"
	"strings"
	"sync"

	"github.com/vmre/vmre"
)

// ReadFile reads a token from path: the file's content without surrounding
// white space. It refuses a token [Check] refuses and, on Unix, a file
// that others than its owner may read or write. Errors about the file's
// content or mode wrap [vmre.ErrInvalidConfig].
func ReadFile(path string) (string, error) {
	info, err := os.Stat(path)
	if err != nil {
		return "", fmt.Errorf("read token file: %w", err)
	}
	return readFile(path, info)
}

func readFile(path string, info os.FileInfo) (string, error) {
	if !info.Mode().IsRegular() {
		return "", fmt.Errorf("%w: token file %s is not a regular file", vmre.ErrInvalidConfig, path)
	}
	if runtime.GOOS != "windows" && info.Mode().Perm()&0o077 != 0 {
		return "", fmt.Errorf("%w: token file %s has mode %v; make it readable by its owner only (chmod 600)",
			vmre.ErrInvalidConfig, path, info.Mode().Perm())
	}
	b, err := os.ReadFile(path)
	if err != nil {
		return "", fmt.Errorf("read token file: %w", err)
	}
	secret := strings.TrimSpace(string(b))
	if err := Check(secret); err != nil {
		return "", fmt.Errorf("%w: token file %s: %w", vmre.ErrInvalidConfig, path, err)
	}
	return secret, nil
}

// File is a token kept in a file and re-read whenever the file changes,
// so that a token rotated by replacing the file (a Kubernetes Secret, a
// Nomad template) takes effect without a restart and the old one stops
// working. Create it with [OpenFile]. It is safe for concurrent use.
type File struct {
	path string

	mu     sync.Mutex
	info   os.FileInfo // the file as it was when last read
	secret string      // empty while the file's content is refused
	err    error       // why secret is empty
}

// OpenFile reads the token in path (see [ReadFile]) and fails as ReadFile
// does: a file that is wrong at start-up is a configuration error.
func OpenFile(path string) (*File, error) {
	info, err := os.Stat(path)
	if err != nil {
		return nil, fmt.Errorf("read token file: %w", err)
	}
	secret, err := readFile(path, info)
	if err != nil {
		return nil, err
	}
	return &File{path: path, info: info, secret: secret}, nil
}

// Path returns the file's path.
func (f *File) Path() string { return f.path }

// Token returns the current token. It stats the file (following a
// symlink) and re-reads it if it is another file or has another size, mode
// or modification time than when last read. A file that has become
// unreadable or invalid yields "" and the reason: no token matches then
// (see [Equal]), since the one read before may be the very secret the
// rotation withdrew.
func (f *File) Token() (string, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	info, err := os.Stat(f.path)
	if err != nil {
		f.info, f.secret, f.err = nil, "", fmt.Errorf("read token file: %w", err)
		return "", f.err
	}
	if f.info != nil && os.SameFile(info, f.info) && info.Size() == f.info.Size() &&
		info.ModTime().Equal(f.info.ModTime()) && info.Mode() == f.info.Mode() {
		return f.secret, f.err
	}
	f.info = info
	f.secret, f.err = readFile(f.path, info)
	return f.secret, f.err
}
