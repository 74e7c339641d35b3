// Package preflight checks a plugin binary before it is started, and hands
// back the open file so that, where it can, exactly the checked file is
// executed.
//
// [Open] verifies that the path names a regular, executable file whose
// header (ELF, Mach-O or PE; a "#!" script is accepted on Unix) is for the
// target OS and architecture, that the interpreter a "#!" line or (for
// the host's own OS and architecture) an ELF binary names exists and is
// executable, and, when a SHA-256 pin is given, that the file's contents
// hash to it. Every check of the file reads the same open file.
// [Executable.Prepare] then points an [exec.Cmd] at that file:
//
//   - On Linux a binary is executed as /proc/self/fd/N, a descriptor of
//     the checked file, so renaming, deleting or symlink-swapping the path
//     after the checks has no effect: the checked inode is what runs. The
//     descriptor is close-on-exec, so the running binary does not hold it
//     (the kernel resolves the path before it closes the descriptor, and
//     needs no descriptor of a loaded binary). It is executed through
//     a link to that path named like the file, so that the process keeps
//     its name. A "#!" script is executed by its checked absolute path, so
//     that its $0 is its real path (the kernel hands the interpreter the
//     executed path), and inherits no descriptor; as on macOS, a window
//     remains in which the path could be swapped. With a SHA-256 pin a
//     script is executed through /proc/self/fd/N too, so that the pinned
//     contents are what runs, and its $0 is then /proc/self/fd/N; that
//     script keeps descriptor N open, because its interpreter opens
//     /proc/self/fd/N after the exec: a descriptor closed at exec would
//     be gone by then. If /proc
//     is not mounted, the path is executed by name.
//   - On Windows the path is executed by name; the open handle (opened
//     without FILE_SHARE_DELETE) keeps the file from being renamed or
//     deleted until [Executable.Close].
//   - On macOS and other systems the path is executed by name after the
//     checks, so a window remains in which the path could be swapped.
//
// Neither protects against someone who can write to the file itself in
// place between the check and exec: keep plugin binaries writable only by
// their owner.
//
// Errors wrap [vmre.ErrNotExecutable] (missing, not a regular file, not
// executable, unknown format, wrong OS or architecture, missing
// interpreter),
// [vmre.ErrChecksumMismatch] (the pin does not match) or
// [vmre.ErrInvalidConfig] (a malformed pin); a missing file also matches
// [fs.ErrNotExist].
package preflight

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"

	"github.com/vmre/vmre"
)

// Options configures [Open]. The zero value checks the file for this
// process's OS and architecture, without a pin.
type Options struct {
	// SHA256 pins the file's contents; the zero Digest means no pin.
	SHA256 Digest
	// GOOS and GOARCH name the platform the binary must be built for;
	// defaults runtime.GOOS and runtime.GOARCH. Architectures vmre does not
	// know are not checked.
	GOOS, GOARCH string
}

// Executable is a checked plugin file, held open until [Executable.Close].
// It is not safe for concurrent use.
type Executable struct {
	// Path is the absolute path that was checked.
	Path string
	// Format is "elf", "macho", "pe" or "script".
	Format string
	// SHA256 is the contents' hex digest, set only when a pin was checked.
	SHA256 string

	file    *os.File
	link    string   // made by Prepare in linkDir (Linux), removed by Close
	linkDir int      // the descriptor of link's directory
	dirDup  int      // a copy of linkDir that Prepare made (never 0), or 0; closed by Close
	dup     *os.File // a copy of file that Prepare made (Linux), closed by Close
}

// Open checks path (resolved through $PATH if it has no separator, as
// [exec.Command] does; relative paths are relative to the working
// directory) and returns it open. The caller must Close it once the process
// has started, or on any failure. Open blocks while it reads the file:
// hashing a large binary for a pin takes time proportional to its size.
func Open(path string, opts Options) (*Executable, error) {
	if opts.GOOS == "" {
		opts.GOOS = runtime.GOOS
	}
	if opts.GOARCH == "" {
		opts.GOARCH = runtime.GOARCH
	}
	if path == "" {
		return nil, fmt.Errorf("%w: empty path", vmre.ErrNotExecutable)
	}
	if !strings.ContainsRune(path, filepath.Separator) && !strings.ContainsRune(path, '/') {
		lp, err := exec.LookPath(path)
		if err != nil {
			return nil, fmt.Errorf("%w: %w", vmre.ErrNotExecutable, err)
		}
		path = lp
	}
	abs, err := filepath.Abs(path)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", vmre.ErrNotExecutable, err)
	}
	f, err := openNoBlock(abs)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", vmre.ErrNotExecutable, err)
	}
	e := &Executable{Path: abs, file: f}
	if err := e.check(opts); err != nil {
		_ = f.Close()
		return nil, err
	}
	return e, nil
}

func (e *Executable) check(opts Options) error {
	info, err := e.file.Stat()
	if err != nil {
		return fmt.Errorf("%w: %w", vmre.ErrNotExecutable, err)
	}
	switch {
	case info.IsDir():
		return fmt.Errorf("%w: %s is a directory", vmre.ErrNotExecutable, e.Path)
	case !info.Mode().IsRegular():
		return fmt.Errorf("%w: %s is not a regular file (%s)", vmre.ErrNotExecutable, e.Path, fileType(info.Mode()))
	}
	if opts.GOOS != "windows" && info.Mode().Perm()&0o111 == 0 {
		return fmt.Errorf("%w: %s has mode %s, no execute permission", vmre.ErrNotExecutable, e.Path, info.Mode().Perm())
	}
	if err := checkAccess(e.file); err != nil {
		return fmt.Errorf("%w: %s: %w", vmre.ErrNotExecutable, e.Path, err)
	}
	v, err := checkFormat(e.file, opts.GOOS, opts.GOARCH)
	if err != nil {
		return fmt.Errorf("%w: %s: %w", vmre.ErrNotExecutable, e.Path, err)
	}
	// The interpreter is looked up on this system, so only for a binary
	// meant to run here.
	if v.interp != "" && opts.GOOS == runtime.GOOS && opts.GOARCH == runtime.GOARCH {
		if err := checkInterp(v.interp); err != nil {
			return fmt.Errorf("%w: %s: %w", vmre.ErrNotExecutable, e.Path, err)
		}
	}
	e.Format = v.format
	if want := opts.SHA256; want.set {
		h := sha256.New()
		// A section reader reads by offset, leaving the file's position
		// alone, and reads to the real end even if the file grew.
		if _, err := io.Copy(h, io.NewSectionReader(e.file, 0, 1<<62)); err != nil {
			return fmt.Errorf("%w: hash %s: %w", vmre.ErrNotExecutable, e.Path, err)
		}
		var got Digest
		h.Sum(got.sum[:0])
		got.set = true
		e.SHA256 = got.String()
		if got != want {
			return fmt.Errorf("%w: sha256 of %s is %s, want %s", vmre.ErrChecksumMismatch, e.Path, e.SHA256, want)
		}
	}
	return nil
}

// Close closes the file. Call it after [exec.Cmd.Start] has returned: the
// child holds its own descriptor by then. Close is idempotent.
func (e *Executable) Close() error {
	if e == nil || e.file == nil {
		return nil
	}
	e.removeLink()
	err := e.file.Close()
	e.file = nil
	if errors.Is(err, os.ErrClosed) {
		return nil
	}
	return err
}

// Digest is a SHA-256 pin of a file's contents. The zero value means no
// pin. Its text form (String, MarshalText, UnmarshalText, so flag.TextVar
// and config decoders parse it) is 64 lowercase hex digits, and "" for no
// pin; UnmarshalText also accepts upper case, surrounding space and a
// "sha256:" prefix. A Digest is a value: compare it with ==.
type Digest struct {
	sum [sha256.Size]byte
	set bool
}

// ParseDigest parses a pin as [Digest.UnmarshalText] does. Errors wrap
// [vmre.ErrInvalidConfig].
func ParseDigest(s string) (Digest, error) {
	var d Digest
	err := d.UnmarshalText([]byte(s))
	return d, err
}

// IsZero reports whether d is no pin.
func (d Digest) IsZero() bool { return !d.set }

// String returns the digest as 64 lowercase hex digits, or "" for no pin.
func (d Digest) String() string {
	if !d.set {
		return ""
	}
	return hex.EncodeToString(d.sum[:])
}

// MarshalText returns [Digest.String]'s text.
func (d Digest) MarshalText() ([]byte, error) { return []byte(d.String()), nil }

// UnmarshalText parses "" (no pin) or 64 hex digits, optionally prefixed
// "sha256:", in either case. On error d is unchanged and the error wraps
// [vmre.ErrInvalidConfig].
func (d *Digest) UnmarshalText(text []byte) error {
	s := string(text)
	if s == "" {
		*d = Digest{}
		return nil
	}
	hexDigits := strings.TrimPrefix(strings.ToLower(strings.TrimSpace(s)), "sha256:")
	var out Digest
	if len(hexDigits) != hex.EncodedLen(sha256.Size) {
		return fmt.Errorf("%w: sha256 pin %q, want 64 hex digits", vmre.ErrInvalidConfig, s)
	}
	if _, err := hex.Decode(out.sum[:], []byte(hexDigits)); err != nil {
		return fmt.Errorf("%w: sha256 pin %q, want 64 hex digits", vmre.ErrInvalidConfig, s)
	}
	out.set = true
	*d = out
	return nil
}

func fileType(m fs.FileMode) string {
	switch {
	case m&fs.ModeNamedPipe != 0:
		return "named pipe"
	case m&fs.ModeSocket != 0:
		return "socket"
	case m&fs.ModeCharDevice != 0:
		return "character device"
	case m&fs.ModeDevice != 0:
		return "device"
	case m&fs.ModeSymlink != 0:
		return "symlink"
	default:
		return m.Type().String()
	}
}
