package preflight_test

import (
	"bufio"
	"crypto/sha256"
	"debug/elf"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"testing"

	"github.com/vmre/vmre"
	"github.com/vmre/vmre/internal/preflight"
)

// childKey makes the test binary act as a tiny plugin that prints its
// argv[0], for the exec tests.
const childKey = "PREFLIGHT_TEST_CHILD"

func TestMain(m *testing.M) {
	if os.Getenv(childKey) == "hello" {
		name := ""
		if comm, err := os.ReadFile("/proc/self/comm"); err == nil {
			name = " named " + strings.TrimSpace(string(comm))
		}
		os.Stdout.WriteString("checked binary ran as " + os.Args[0] + name + "\n")
		os.Exit(0)
	}
	if os.Getenv(childKey) == "fds" {
		// Every descriptor above 2 and what it is; the directory read
		// below holds one more, named after it.
		dir, err := os.Open("/proc/self/fd")
		if err != nil {
			os.Exit(1)
		}
		names, _ := dir.Readdirnames(-1)
		for _, name := range names {
			if n, err := strconv.Atoi(name); err != nil || n <= 2 || n == int(dir.Fd()) {
				continue
			}
			target, _ := os.Readlink("/proc/self/fd/" + name)
			os.Stdout.WriteString(name + " -> " + target + "\n")
		}
		os.Exit(0)
	}
	if mode := os.Getenv(childKey); mode == "prepare" || mode == "prepare-hold" {
		os.Exit(prepareChild(mode == "prepare-hold"))
	}
	os.Exit(m.Run())
}

// prepareChild is an engine's launch cut short: it prepares the test
// binary for an exec, prints the directory of the link Prepare made (the
// path cmd.Path reaches it through, /proc/self/fd/D, resolved), and then
// either closes it or, with hold, waits on stdin to be killed.
func prepareChild(hold bool) int {
	e, err := preflight.Open(os.Args[0], preflight.Options{})
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	cmd := exec.Command(os.Args[0])
	e.Prepare(cmd)
	dir, err := os.Readlink(filepath.Dir(filepath.Dir(cmd.Path)))
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	fmt.Println(dir)
	if hold {
		_, _ = bufio.NewReader(os.Stdin).ReadString('\n')
	}
	if err := e.Close(); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	return 0
}

var selfBytes = sync.OnceValues(func() ([]byte, error) { return os.ReadFile(os.Args[0]) })

// self returns the test binary's contents: a real executable for this
// platform.
func self(t *testing.T) []byte {
	t.Helper()
	b, err := selfBytes()
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func write(t *testing.T, name string, data []byte, mode os.FileMode) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), name)
	if err := os.WriteFile(path, data, mode); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(path, mode); err != nil { // WriteFile's mode passes through the umask
		t.Fatal(err)
	}
	return path
}

func sum(b []byte) string {
	s := sha256.Sum256(b)
	return hex.EncodeToString(s[:])
}

// otherArchELF returns a copy of an ELF binary whose e_machine names an
// architecture this is not.
func otherArchELF(t *testing.T) []byte {
	t.Helper()
	b := append([]byte(nil), self(t)...)
	if !strings.HasPrefix(string(b), elf.ELFMAG) {
		t.Skip("the test binary is not ELF on this OS")
	}
	other := elf.EM_AARCH64
	if runtime.GOARCH == "arm64" {
		other = elf.EM_X86_64
	}
	order := binary.ByteOrder(binary.LittleEndian)
	if elf.Data(b[elf.EI_DATA]) == elf.ELFDATA2MSB {
		order = binary.BigEndian
	}
	order.PutUint16(b[18:], uint16(other)) // e_machine
	return b
}

// machO returns a minimal 64-bit Mach-O executable header for cpu.
func machO(cpu uint32) []byte {
	b := make([]byte, 32)
	binary.LittleEndian.PutUint32(b[0:], 0xfeedfacf) // MH_MAGIC_64
	binary.LittleEndian.PutUint32(b[4:], cpu)
	binary.LittleEndian.PutUint32(b[12:], 2) // MH_EXECUTE
	return b
}

// peImage returns a minimal PE image header for machine.
func peImage(machine uint16, characteristics uint16) []byte {
	b := make([]byte, 128) // debug/pe reads a 96-byte DOS header
	copy(b, "MZ")
	binary.LittleEndian.PutUint32(b[0x3c:], 0x40)
	copy(b[0x40:], "PE\x00\x00")
	binary.LittleEndian.PutUint16(b[0x44:], machine)
	binary.LittleEndian.PutUint16(b[0x44+18:], characteristics)
	return b
}

func TestOpen(t *testing.T) {
	t.Parallel()
	exe := self(t)
	relocatable := append([]byte(nil), exe...)
	if strings.HasPrefix(string(exe), elf.ELFMAG) {
		binary.LittleEndian.PutUint16(relocatable[16:], uint16(elf.ET_REL)) // e_type (little-endian hosts)
	}
	tests := []struct {
		name       string
		path       func(t *testing.T) string
		opts       preflight.Options
		wantErr    error
		wantFormat string
		wantText   string
	}{
		{
			name:    "missing",
			path:    func(t *testing.T) string { return filepath.Join(t.TempDir(), "nope") },
			wantErr: fs.ErrNotExist,
		},
		{
			name:     "directory",
			path:     func(t *testing.T) string { return t.TempDir() },
			wantErr:  vmre.ErrNotExecutable,
			wantText: "is a directory",
		},
		{
			name:     "empty",
			path:     func(t *testing.T) string { return write(t, "empty", nil, 0o755) },
			wantErr:  vmre.ErrNotExecutable,
			wantText: "file is empty",
		},
		{
			name:     "text",
			path:     func(t *testing.T) string { return write(t, "text", []byte("hello world\n"), 0o755) },
			wantErr:  vmre.ErrNotExecutable,
			wantText: "unknown executable format",
		},
		{
			name:       "this platform's binary",
			path:       func(t *testing.T) string { return write(t, "plugin", exe, 0o755) },
			wantFormat: formatOf(exe),
		},
		{
			name:     "binary for another OS",
			path:     func(t *testing.T) string { return write(t, "plugin", exe, 0o755) },
			opts:     preflight.Options{GOOS: otherOS()},
			wantErr:  vmre.ErrNotExecutable,
			wantText: "is not for " + otherOS(),
		},
		{
			name:     "unknown command on PATH",
			path:     func(*testing.T) string { return "vmre-no-such-command-3141" },
			wantErr:  vmre.ErrNotExecutable,
			wantText: "not found",
		},
		{
			name:     "bad pin",
			path:     func(t *testing.T) string { return write(t, "plugin", exe, 0o755) },
			opts:     preflight.Options{SHA256: digest(strings.Repeat("ab", 32))},
			wantErr:  vmre.ErrChecksumMismatch,
			wantText: "want " + strings.Repeat("ab", 32),
		},
		{
			name:       "good pin",
			path:       func(t *testing.T) string { return write(t, "plugin", exe, 0o755) },
			opts:       preflight.Options{SHA256: digest(sum(exe))},
			wantFormat: formatOf(exe),
		},
		{
			name:       "good pin, prefixed and upper case",
			path:       func(t *testing.T) string { return write(t, "plugin", exe, 0o755) },
			opts:       preflight.Options{SHA256: digest("sha256:" + strings.ToUpper(sum(exe)))},
			wantFormat: formatOf(exe),
		},
		{
			name:     "Mach-O on linux",
			path:     func(t *testing.T) string { return write(t, "macho", machO(0x0100000c), 0o755) },
			opts:     preflight.Options{GOOS: "linux", GOARCH: "arm64"},
			wantErr:  vmre.ErrNotExecutable,
			wantText: "Mach-O",
		},
		{
			name:       "Mach-O for darwin/arm64",
			path:       func(t *testing.T) string { return write(t, "macho", machO(0x0100000c), 0o755) },
			opts:       preflight.Options{GOOS: "darwin", GOARCH: "arm64"},
			wantFormat: "macho",
		},
		{
			name:     "Mach-O arm64 for darwin/amd64",
			path:     func(t *testing.T) string { return write(t, "macho", machO(0x0100000c), 0o755) },
			opts:     preflight.Options{GOOS: "darwin", GOARCH: "amd64"},
			wantErr:  vmre.ErrNotExecutable,
			wantText: "no executable for darwin/amd64",
		},
		{
			name:       "PE for windows/amd64",
			path:       func(t *testing.T) string { return write(t, "pe.exe", peImage(0x8664, 0x22), 0o755) },
			opts:       preflight.Options{GOOS: "windows", GOARCH: "amd64"},
			wantFormat: "pe",
		},
		{
			name:     "PE arm64 for windows/amd64",
			path:     func(t *testing.T) string { return write(t, "pe.exe", peImage(0xaa64, 0x22), 0o755) },
			opts:     preflight.Options{GOOS: "windows", GOARCH: "amd64"},
			wantErr:  vmre.ErrNotExecutable,
			wantText: "not for windows/amd64",
		},
		{
			name:     "PE DLL",
			path:     func(t *testing.T) string { return write(t, "pe.dll", peImage(0x8664, 0x2022), 0o755) },
			opts:     preflight.Options{GOOS: "windows", GOARCH: "amd64"},
			wantErr:  vmre.ErrNotExecutable,
			wantText: "not an executable image",
		},
		{
			name:     "PE on linux",
			path:     func(t *testing.T) string { return write(t, "pe.exe", peImage(0x8664, 0x22), 0o755) },
			opts:     preflight.Options{GOOS: "linux", GOARCH: "amd64"},
			wantErr:  vmre.ErrNotExecutable,
			wantText: "is not for linux",
		},
	}
	if strings.HasPrefix(string(exe), elf.ELFMAG) {
		tests = append(tests,
			struct {
				name       string
				path       func(t *testing.T) string
				opts       preflight.Options
				wantErr    error
				wantFormat string
				wantText   string
			}{
				name:     "ELF for another architecture",
				path:     func(t *testing.T) string { return write(t, "plugin", otherArchELF(t), 0o755) },
				wantErr:  vmre.ErrNotExecutable,
				wantText: "is not for " + runtime.GOOS + "/" + runtime.GOARCH,
			},
			struct {
				name       string
				path       func(t *testing.T) string
				opts       preflight.Options
				wantErr    error
				wantFormat string
				wantText   string
			}{
				name:     "relocatable ELF",
				path:     func(t *testing.T) string { return write(t, "plugin.o", relocatable, 0o755) },
				wantErr:  vmre.ErrNotExecutable,
				wantText: "not an executable (type ET_REL)",
			},
		)
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			e, err := preflight.Open(tt.path(t), tt.opts)
			if e != nil {
				defer e.Close()
			}
			if !errors.Is(err, tt.wantErr) {
				t.Fatalf("Open error = %v, want %v", err, tt.wantErr)
			}
			if err != nil {
				if e != nil {
					t.Fatal("Open returned an Executable and an error")
				}
				if !strings.Contains(err.Error(), tt.wantText) {
					t.Fatalf("error %q does not contain %q", err, tt.wantText)
				}
				return
			}
			if e.Format != tt.wantFormat {
				t.Fatalf("Format = %q, want %q", e.Format, tt.wantFormat)
			}
			if !tt.opts.SHA256.IsZero() && e.SHA256 != sum(exe) {
				t.Fatalf("SHA256 = %q, want %q", e.SHA256, sum(exe))
			}
			if !filepath.IsAbs(e.Path) {
				t.Fatalf("Path %q is not absolute", e.Path)
			}
		})
	}
}

func formatOf(b []byte) string {
	switch {
	case strings.HasPrefix(string(b), elf.ELFMAG):
		return "elf"
	case strings.HasPrefix(string(b), "MZ"):
		return "pe"
	default:
		return "macho"
	}
}

func otherOS() string {
	if runtime.GOOS == "windows" {
		return "linux"
	}
	return "windows"
}

// TestParseDigest: the accepted text forms of a pin, the refused ones,
// and String's canonical form, which parses back to the same Digest.
func TestParseDigest(t *testing.T) {
	t.Parallel()
	good := strings.Repeat("0f", 32)
	for _, tt := range []struct {
		name     string
		in       string
		wantErr  error
		wantText string
	}{
		{name: "empty: no pin", in: "", wantText: ""},
		{name: "hex", in: good, wantText: good},
		{name: "prefixed, upper case, spaced", in: " sha256:" + strings.ToUpper(good) + "\n", wantText: good},
		{name: "short", in: good[:62], wantErr: vmre.ErrInvalidConfig},
		{name: "long", in: good + "00", wantErr: vmre.ErrInvalidConfig},
		{name: "not hex", in: strings.Repeat("zz", 32), wantErr: vmre.ErrInvalidConfig},
		{name: "other algorithm", in: "md5:" + good, wantErr: vmre.ErrInvalidConfig},
	} {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			d, err := preflight.ParseDigest(tt.in)
			if !errors.Is(err, tt.wantErr) {
				t.Fatalf("ParseDigest(%q) error = %v, want %v", tt.in, err, tt.wantErr)
			}
			if err != nil {
				if !d.IsZero() {
					t.Errorf("ParseDigest(%q) = %v with an error, want the zero Digest", tt.in, d)
				}
				return
			}
			if got := d.String(); got != tt.wantText {
				t.Errorf("String() = %q, want %q", got, tt.wantText)
			}
			if d.IsZero() != (tt.wantText == "") {
				t.Errorf("IsZero() = %v for %q", d.IsZero(), tt.in)
			}
			back, err := preflight.ParseDigest(d.String())
			if err != nil || back != d {
				t.Errorf("ParseDigest(String()) = %v, %v; want %v", back, err, d)
			}
		})
	}
}

// digest parses a pin the test knows to be valid.
func digest(s string) preflight.Digest {
	d, err := preflight.ParseDigest(s)
	if err != nil {
		panic(err)
	}
	return d
}

func TestCloseIdempotent(t *testing.T) {
	t.Parallel()
	e, err := preflight.Open(write(t, "plugin", self(t), 0o755), preflight.Options{})
	if err != nil {
		t.Fatal(err)
	}
	if err := e.Close(); err != nil {
		t.Fatal(err)
	}
	if err := e.Close(); err != nil {
		t.Fatalf("second Close: %v", err)
	}
}
