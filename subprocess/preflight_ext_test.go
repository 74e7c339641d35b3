//go:build linux

package subprocess_test

import (
	"bytes"
	"crypto/sha256"
	"debug/elf"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"

	"github.com/vmre/vmre"
	"github.com/vmre/vmre/internal/preflight/preflighttest"
	"github.com/vmre/vmre/subprocess"
)

// otherArchELF returns the header of an ELF executable for an architecture
// other than this one.
func otherArchELF(t *testing.T) []byte {
	t.Helper()
	machine := elf.EM_AARCH64
	if runtime.GOARCH == "arm64" {
		machine = elf.EM_X86_64
	}
	hdr := elf.Header64{
		Ident:     [elf.EI_NIDENT]byte{0x7f, 'E', 'L', 'F', byte(elf.ELFCLASS64), byte(elf.ELFDATA2LSB), byte(elf.EV_CURRENT)},
		Type:      uint16(elf.ET_EXEC),
		Machine:   uint16(machine),
		Version:   uint32(elf.EV_CURRENT),
		Ehsize:    64,
		Phentsize: 56,
		Shentsize: 64,
	}
	var buf bytes.Buffer
	if err := binary.Write(&buf, binary.LittleEndian, hdr); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

// countChildren returns how many child processes (zombies included) this
// process has.
func countChildren(t *testing.T) int {
	t.Helper()
	tasks, err := filepath.Glob("/proc/self/task/*/children")
	if err != nil || len(tasks) == 0 {
		t.Fatalf("list /proc/self/task/*/children: %v", err)
	}
	n := 0
	for _, f := range tasks {
		b, err := os.ReadFile(f)
		if err != nil {
			continue // the thread exited
		}
		n += len(strings.Fields(string(b)))
	}
	return n
}

// countFds returns how many descriptors this process has open.
func countFds(t *testing.T) int {
	t.Helper()
	entries, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		t.Fatal(err)
	}
	return len(entries)
}

// TestPluginKeepsItsName: the plugin runs through the checked descriptor
// but keeps its name in /proc/PID/comm (what ps, top and pgrep show), and
// the link that gives it the name is gone once Bootstrap has returned.
// Not parallel, so that no other launch of this process makes a link.
func TestPluginKeepsItsName(t *testing.T) {
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	st, p := mustBootstrap(t, "tiny", nil, noRaceExitDelay)
	defer p.Stop(t.Context())
	comm, err := os.ReadFile("/proc/" + strconv.Itoa(st.Pid) + "/comm")
	if err != nil {
		t.Fatal(err)
	}
	want := filepath.Base(exe)
	if len(want) > 15 { // the kernel keeps 15 bytes
		want = want[:15]
	}
	if got := strings.TrimSpace(string(comm)); got != want {
		t.Errorf("plugin is named %q, want %q", got, want)
	}
	if link, err := os.Readlink("/proc/" + strconv.Itoa(st.Pid) + "/exe"); err != nil || link != exe {
		t.Errorf("plugin executes %q (%v), want %s", link, err, exe)
	}
	// The links live in a directory named after this process, which
	// stays; the launch's own link does not.
	for _, base := range []string{os.Getenv("XDG_RUNTIME_DIR"), "/dev/shm", os.TempDir()} {
		if base == "" {
			continue
		}
		dirs, _ := filepath.Glob(filepath.Join(base, "vmre-exec-"+strconv.Itoa(os.Getpid())+"-*"))
		for _, dir := range dirs {
			_ = filepath.WalkDir(dir, func(path string, d fs.DirEntry, err error) error {
				if err == nil && !d.IsDir() {
					t.Errorf("left after the launch: %s", path)
				}
				return nil
			})
		}
	}
}

// TestBootstrapPreflight: a plugin that is missing, a directory, not
// executable, empty, for another architecture, a script with a missing
// interpreter or CRLF line endings, a binary with a missing ELF
// interpreter, or not matching its SHA-256 pin fails with a clear error
// before anything is started: no process (a marker the plugin would write
// stays absent, no child appears), no descriptor left open. It is not
// parallel, so that the counts are this test's own.
func TestBootstrapPreflight(t *testing.T) {
	dir := t.TempDir()
	marker := filepath.Join(dir, "ran")
	script := "#!/bin/sh\ntouch " + marker + "\n"
	write := func(name string, body []byte, mode os.FileMode) string {
		path := filepath.Join(dir, name)
		if err := os.WriteFile(path, body, mode); err != nil {
			t.Fatal(err)
		}
		if err := os.Chmod(path, mode); err != nil { // umask
			t.Fatal(err)
		}
		return path
	}
	noExec := write("no-exec.sh", []byte(script), 0o644)
	wrongArch := write("wrong-arch", otherArchELF(t), 0o755)
	empty := write("empty", nil, 0o755)
	badInterp := write("bad-interp.sh", []byte("#!/no/such/interpreter\n"), 0o755)
	crlf := write("crlf.sh", []byte(strings.ReplaceAll(script, "\n", "\r\n")), 0o755)
	const musl = "/no/such/lib/ld-musl-x86_64.so.1"
	noInterp := write("musl-vm", preflighttest.HostELF(t, musl), 0o755)
	pinned := write("pinned.sh", []byte(script), 0o755)
	otherSum := sha256.Sum256([]byte("another build"))

	tests := []struct {
		name     string
		cmd      *exec.Cmd
		sha      string
		wantErr  []error
		wantText string
	}{
		{"missing", subprocess.NewCmd(filepath.Join(dir, "no-such-plugin")), "", []error{vmre.ErrNotExecutable, fs.ErrNotExist}, "no such file or directory"},
		{"not in PATH", subprocess.NewCmd("vmre-no-such-plugin-in-path"), "", []error{vmre.ErrNotExecutable, exec.ErrNotFound}, "executable file not found in $PATH"},
		{"directory", subprocess.NewCmd(dir), "", []error{vmre.ErrNotExecutable}, "is a directory"},
		{"not executable", subprocess.NewCmd(noExec), "", []error{vmre.ErrNotExecutable}, "no execute permission"},
		{"empty file", subprocess.NewCmd(empty), "", []error{vmre.ErrNotExecutable}, "file is empty"},
		{"another architecture", subprocess.NewCmd(wrongArch), "", []error{vmre.ErrNotExecutable}, "is not for " + runtime.GOOS + "/" + runtime.GOARCH},
		{"missing interpreter", subprocess.NewCmd(badInterp), "", []error{vmre.ErrNotExecutable}, "#! interpreter"},
		{"CRLF script", subprocess.NewCmd(crlf), "", []error{vmre.ErrNotExecutable}, "CRLF (Windows) line endings"},
		{"missing ELF interpreter", subprocess.NewCmd(noInterp), "", []error{vmre.ErrNotExecutable}, noInterp + ": ELF interpreter " + musl + " not found"},
		{"sha256 mismatch", subprocess.NewCmd(pinned), hex.EncodeToString(otherSum[:]), []error{vmre.ErrChecksumMismatch}, "sha256 of " + pinned + " is " + preflighttest.FileSHA256(t, pinned) + ", want " + hex.EncodeToString(otherSum[:])},
		{"relative to cmd.Dir", func() *exec.Cmd { c := subprocess.NewCmd("./no-exec.sh"); c.Dir = dir; return c }(), "", []error{vmre.ErrNotExecutable}, "no execute permission"},
	}
	// Warm up: the first launch of the program starts the spawner and the
	// watchdog, which live on.
	_, p := mustBootstrap(t, "tiny", nil, noRaceExitDelay)
	p.Stop(t.Context())
	fds, children := countFds(t), countChildren(t)
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p, err := subprocess.Bootstrap(t.Context(), tt.cmd, &subprocess.Config{SHA256: pinOf(t, tt.sha)})
			t.Logf("error: %v", err)
			if !errors.Is(err, vmre.ErrHandshakeFailed) {
				t.Errorf("err = %v, want ErrHandshakeFailed", err)
			}
			for _, want := range tt.wantErr {
				if !errors.Is(err, want) {
					t.Errorf("err = %v, want %v", err, want)
				}
			}
			if err != nil && !strings.Contains(err.Error(), tt.wantText) {
				t.Errorf("err = %q, want it to say %q", err, tt.wantText)
			}
			if p != nil || tt.cmd.Process != nil {
				t.Fatal("a process was started")
			}
			if got := countChildren(t); got != children {
				t.Errorf("%d child processes, want %d", got, children)
			}
			if got := countFds(t); got != fds {
				t.Errorf("%d descriptors open, want %d", got, fds)
			}
		})
	}
	if _, err := os.Stat(marker); err == nil {
		t.Error("a refused plugin ran")
	}

	t.Run("sha256 match launches", func(t *testing.T) {
		exe, err := os.Executable()
		if err != nil {
			t.Fatal(err)
		}
		sum := preflighttest.FileSHA256(t, exe)
		for _, pin := range []string{sum, "sha256:" + strings.ToUpper(sum)} {
			st, p := mustBootstrap(t, "tiny", &subprocess.Config{SHA256: pinOf(t, pin)}, noRaceExitDelay)
			// Executed through the checked descriptor, not by name.
			if link, err := os.Readlink("/proc/" + strconv.Itoa(st.Pid) + "/exe"); err != nil || link != exe {
				t.Errorf("plugin executes %q (%v), want %s", link, err, exe)
			}
			p.Stop(t.Context())
		}
		if _, err := os.Stat(marker); err == nil {
			t.Error("a refused plugin ran")
		}
	})
}

// TestScriptPluginSeesItsPath: an unpinned "#!" plugin is executed by its
// path, so the usual wrapper that execs a binary beside itself through
// "$(dirname "$0")" works; a pinned one runs through the checked
// descriptor, so its $0 is /proc/self/fd/N. Both exit before the
// handshake, and their stderr arrives in the exit error's tail.
func TestScriptPluginSeesItsPath(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	write := func(name, body string) string {
		path := filepath.Join(dir, name)
		if err := os.WriteFile(path, []byte(body), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.Chmod(path, 0o755); err != nil { // umask
			t.Fatal(err)
		}
		return path
	}
	realVM := write("real-vm", "#!/bin/sh\necho \"real-vm ran as $0\" >&2\nexit 3\n")
	wrapper := write("wrapper", "#!/bin/sh\nexec \"$(dirname \"$0\")/real-vm\"\n")
	const printer = "#!/bin/sh\necho \"\\$0=$0\" >&2\nexit 3\n"
	printerPath := write("printer", printer)
	pin := sha256.Sum256([]byte(printer))

	tests := []struct {
		name, path, pin, want string
	}{
		{"wrapper", wrapper, "", "real-vm ran as " + realVM},
		{"unpinned", printerPath, "", "$0=" + printerPath},
		{"pinned", printerPath, hex.EncodeToString(pin[:]), "$0=/proc/self/fd/3"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			p, err := subprocess.Bootstrap(t.Context(), subprocess.NewCmd(tt.path), &subprocess.Config{SHA256: pinOf(t, tt.pin)})
			if err == nil {
				p.Stop(t.Context())
				t.Fatal("Bootstrap succeeded")
			}
			var exitErr *vmre.ExitError
			if !errors.As(err, &exitErr) || exitErr.Code != 3 {
				t.Fatalf("err = %v, want exit status 3", err)
			}
			if got := streamTail(exitErr, subprocess.StreamStderr); !slices.Equal(got, []string{tt.want}) {
				t.Errorf("stderr = %q, want [%q]", got, tt.want)
			}
		})
	}
}

// TestStartErrorNamesPlugin: a file that passes the pre-flight checks but
// that the kernel refuses to execute gives an error naming the plugin's
// path, not the link or /proc/self/fd path it was executed through.
func TestStartErrorNamesPlugin(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	bad := filepath.Join(dir, "myvm")
	if err := os.WriteFile(bad, preflighttest.HostELF(t, ""), 0o755); err != nil {
		t.Fatal(err)
	}
	// A pinned script runs through /proc/self/fd/N; its interpreter is
	// the binary the kernel refuses.
	script := []byte("#!" + bad + "\n")
	scriptPath := filepath.Join(dir, "myvm.sh")
	if err := os.WriteFile(scriptPath, script, 0o755); err != nil {
		t.Fatal(err)
	}
	pin := sha256.Sum256(script)
	tests := []struct {
		name, path, pin string
	}{
		{"binary", bad, ""},
		{"pinned binary", bad, preflighttest.FileSHA256(t, bad)},
		{"pinned script", scriptPath, hex.EncodeToString(pin[:])},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			_, err := subprocess.Bootstrap(t.Context(), subprocess.NewCmd(tt.path), &subprocess.Config{SHA256: pinOf(t, tt.pin)})
			want := "handshake failed: start process: fork/exec " + tt.path + ": exec format error"
			if err == nil || err.Error() != want {
				t.Fatalf("err = %v, want %q", err, want)
			}
			var pathErr *fs.PathError
			if !errors.As(err, &pathErr) || pathErr.Path != tt.path || !errors.Is(err, syscall.ENOEXEC) {
				t.Errorf("err = %#v, want an *fs.PathError for %s wrapping ENOEXEC", err, tt.path)
			}
		})
	}
}
