package config_test

import (
	"errors"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/vmre/vmre"
	"github.com/vmre/vmre/config"
	"github.com/vmre/vmre/engine"
	"github.com/vmre/vmre/subprocess"
)

// issueExample is the file of the issue that asked for config files, as
// written there.
const issueExample = `
runtimes:
  - name: subnet-a                    # unique, [a-z0-9-]
    path: /opt/vms/subnet-evm          # binary or script
    args: ["--flag"]
    env: {GOMEMLIMIT: "2GiB"}
    protocol_versions: [46]
    handshake_timeout: 5s
    graceful_timeout: 5s
    vm_shutdown: true
    restart: {policy: on-failure, initial_backoff: 1s, max_backoff: 5m, max_restarts: 5, window: 10m}
    health: {interval: 10s, timeout: 1s, failure_threshold: 3}
`

func writeFile(t *testing.T, body string) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "vmre.yaml")
	if err := os.WriteFile(path, []byte(body), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

// A file named relative to the working directory anchors its relative
// plugin paths at its absolute directory: "./plugin" stays a path to the
// file beside it, not "plugin", a name that exec would look up in PATH.
func TestParseAnchorsRelativePaths(t *testing.T) {
	dir := t.TempDir()
	t.Chdir(dir)
	const body = "runtimes:\n  - {name: a, path: ./plugin}\n  - {name: b, path: ../up/plugin}\n  - {name: c, path: plugin}\n"
	f, err := config.Parse("vmre.yaml", []byte(body))
	if err != nil {
		t.Fatal(err)
	}
	want := []string{filepath.Join(dir, "plugin"), filepath.Join(filepath.Dir(dir), "up", "plugin"), "plugin"}
	for i, rt := range f.Runtimes {
		if rt.Spec.Path != want[i] {
			t.Errorf("%s: path %q, want %q", rt.Name, rt.Spec.Path, want[i])
		}
	}

	// Without a working directory the file's directory is "." as given,
	// and a path still comes out a path.
	t.Run("working directory removed", func(t *testing.T) {
		if runtime.GOOS == "windows" {
			t.Skip("Windows cannot remove a process's working directory")
		}
		gone := filepath.Join(dir, "gone")
		if err := os.Mkdir(gone, 0o700); err != nil {
			t.Fatal(err)
		}
		t.Chdir(gone)
		if err := os.Remove(gone); err != nil {
			t.Fatal(err)
		}
		f, err := config.Parse("vmre.yaml", []byte(body))
		if err != nil {
			t.Fatal(err)
		}
		if p := f.Runtimes[0].Spec.Path; !strings.ContainsRune(p, filepath.Separator) || filepath.Base(p) != "plugin" {
			t.Errorf("./plugin became %q, want a path to plugin", p)
		}
	})
}

func TestLoadIssueExample(t *testing.T) {
	t.Parallel()
	f, err := config.Load(writeFile(t, issueExample))
	if err != nil {
		t.Fatal(err)
	}
	if len(f.Runtimes) != 1 {
		t.Fatalf("got %d runtimes, want 1", len(f.Runtimes))
	}
	rt := f.Runtimes[0]
	if rt.Name != "subnet-a" || rt.Spec.Name != "subnet-a" || rt.Spec.Path != "/opt/vms/subnet-evm" || strings.Join(rt.Spec.Args, " ") != "--flag" {
		t.Errorf("spec %+v", rt.Spec)
	}
	l := rt.Spec.Launch
	if len(l.AcceptedVersions) != 1 || l.AcceptedVersions[0] != 46 || l.HandshakeTimeout != 5*time.Second ||
		l.GracefulTimeout != 5*time.Second || !l.VMShutdown || strings.Join(l.Env, " ") != "GOMEMLIMIT=2GiB" {
		t.Errorf("launch settings %+v", l)
	}
	want := engine.RestartPolicy{Mode: engine.RestartOnFailure, InitialBackoff: time.Second, MaxBackoff: 5 * time.Minute, MaxRestarts: 5, Window: 10 * time.Minute}
	if rt.Spec.Restart != want {
		t.Errorf("restart %+v, want %+v", rt.Spec.Restart, want)
	}
	if h := (engine.HealthCheck{Interval: 10 * time.Second, Timeout: time.Second, FailureThreshold: 3}); rt.Spec.Health != h {
		t.Errorf("health %+v, want %+v", rt.Spec.Health, h)
	}
}

func TestLoadEveryField(t *testing.T) {
	t.Parallel()
	f, err := config.Load(writeFile(t, `
runtimes:
  - name: a
    path: bin/plugin
    handshake_auth: token
    sha256: "sha256:`+strings.Repeat("ab", 32)+`"
    env_policy: clean
    env_keep: [PATH, "LC_*"]
    env_vars: [MY_ENGINE_ADDR]
    vm_shutdown: false
    limits: {memory: 2GiB, open_files: 1024, processes: 64}
    log: {format: raw}
    restart: {unlimited_restarts: true}
  - name: b
    path: plugin-on-path
`))
	if err != nil {
		t.Fatal(err)
	}
	a, b := f.Runtimes[0], f.Runtimes[1]
	if want := filepath.Join(filepath.Dir(f.Path), "bin/plugin"); a.Spec.Path != want {
		t.Errorf("relative path resolved to %q, want %q (the file's directory)", a.Spec.Path, want)
	}
	if b.Spec.Path != "plugin-on-path" {
		t.Errorf("bare name became %q, want it left for a PATH lookup", b.Spec.Path)
	}
	l := a.Spec.Launch
	if l.HandshakeAuth.String() != "token" || l.EnvPolicy.String() != "clean" || strings.Join(l.EnvKeep, ",") != "PATH,LC_*" ||
		strings.Join(l.EnvVars, ",") != "MY_ENGINE_ADDR" || l.VMShutdown || !strings.HasSuffix(l.SHA256.String(), "abab") {
		t.Errorf("launch settings %+v", l)
	}
	if want := (engine.Limits{MemoryBytes: 2 << 30, OpenFiles: 1024, Processes: 64}); a.Spec.Limits != want {
		t.Errorf("limits %+v, want %+v", a.Spec.Limits, want)
	}
	if a.Spec.Launch.LogFormat != subprocess.LogRaw || b.Spec.Launch.LogFormat != subprocess.LogAuto {
		t.Errorf("log formats %v, %v; want raw, auto", a.Spec.Launch.LogFormat, b.Spec.Launch.LogFormat)
	}
	if a.Spec.Restart.MaxRestarts >= 0 || b.Spec.Restart.MaxRestarts != 0 {
		t.Errorf("max restarts %d, %d; want negative (no limit) and 0 (the default)", a.Spec.Restart.MaxRestarts, b.Spec.Restart.MaxRestarts)
	}
	if !b.Spec.Launch.VMShutdown || b.Spec.Restart.Mode != engine.RestartOnFailure {
		t.Errorf("defaults: vm_shutdown %v, restart %v; want true, on-failure", b.Spec.Launch.VMShutdown, b.Spec.Restart.Mode)
	}
}

func TestLoadJSON(t *testing.T) {
	t.Parallel()
	f, err := config.Load(writeFile(t, `{"runtimes": [{"name": "a", "path": "/bin/a", "handshake_timeout": "2s"}]}`))
	if err != nil {
		t.Fatal(err)
	}
	if f.Runtimes[0].Spec.Launch.HandshakeTimeout != 2*time.Second {
		t.Errorf("handshake timeout %s", f.Runtimes[0].Spec.Launch.HandshakeTimeout)
	}
}

// TestLoadBadFiles names each way a file can be wrong and the error a
// reader gets: the file, the field's path and the reason.
func TestLoadBadFiles(t *testing.T) {
	t.Parallel()
	ok := "  - name: ok\n    path: /bin/ok\n"
	tests := []struct {
		name string
		body string
		want string // the error after "FILE: "
	}{
		{"restart policy", ok + "  - name: b\n    path: /bin/b\n    restart: {policy: sometimes}\n",
			`runtimes[1].restart.policy: "sometimes" is not one of never, on-failure, always`},
		{"unknown field", "  - name: a\n    path: /bin/a\n    restrt: {policy: never}\n",
			"runtimes[0].restrt: unknown field; want one of name, path, args, env"},
		{"camelCase key", "  - name: a\n    path: /bin/a\n    handshakeTimeout: 5s\n",
			"runtimes[0].handshakeTimeout: unknown field"},
		{"unknown nested field", "  - name: a\n    path: /bin/a\n    health: {period: 5s}\n",
			"runtimes[0].health.period: unknown field; want one of interval, timeout, failure_threshold"},
		{"missing name", "  - path: /bin/a\n", "runtimes[0].name: missing"},
		{"bad name", "  - name: Subnet_A\n    path: /bin/a\n", `runtimes[0].name: "Subnet_A": want 1 to 63 lowercase letters`},
		{"duplicate name", ok + ok, `runtimes[1].name: "ok" is also the name of runtimes[0]`},
		{"missing path", "  - name: a\n", "runtimes[0].path: missing"},
		{"home in path", "  - name: a\n    path: ~/vms/a\n", `runtimes[0].path: "~/vms/a": ~ and $VARIABLES are not expanded`},
		{"variable in path", "  - name: a\n    path: $HOME/vms/a\n", `runtimes[0].path: "$HOME/vms/a": ~ and $VARIABLES are not expanded`},
		{"bad duration", "  - name: a\n    path: /bin/a\n    handshake_timeout: 5\n",
			"runtimes[0].handshake_timeout: want a string, got the number 5 (quote it)"},
		{"duration without unit", "  - name: a\n    path: /bin/a\n    graceful_timeout: \"5\"\n",
			`runtimes[0].graceful_timeout: "5" is not a duration`},
		{"negative duration", "  - name: a\n    path: /bin/a\n    restart: {window: -1m}\n",
			`runtimes[0].restart.window: "-1m": want a positive duration`},
		{"backoff order", "  - name: a\n    path: /bin/a\n    restart: {initial_backoff: 1m, max_backoff: 10s}\n",
			"runtimes[0].restart.max_backoff: 10s is below initial_backoff 1m0s"},
		{"negative count", "  - name: a\n    path: /bin/a\n    restart: {max_restarts: -1}\n",
			"runtimes[0].restart.max_restarts: -1 is not a whole number from 0 to 4294967295; for no limit, leave it out and set unlimited_restarts: true"},
		{"unlimited as a count", "  - name: a\n    path: /bin/a\n    restart: {max_restarts: unlimited}\n",
			`runtimes[0].restart.max_restarts: want a number, got "unlimited"; for no limit, leave it out and set unlimited_restarts: true`},
		{"unlimited and a count", "  - name: a\n    path: /bin/a\n    restart: {max_restarts: 3, unlimited_restarts: true}\n",
			"runtimes[0].restart.unlimited_restarts: true with max_restarts 3; leave one of them out"},
		{"count as text", "  - name: a\n    path: /bin/a\n    health: {interval: 1s, failure_threshold: three}\n",
			`runtimes[0].health.failure_threshold: want a number, got "three"`},
		{"health without interval", "  - name: a\n    path: /bin/a\n    health: {timeout: 1s}\n",
			"runtimes[0].health.interval: missing"},
		{"health timeout over interval", "  - name: a\n    path: /bin/a\n    health: {interval: 1s, timeout: 2s}\n",
			"runtimes[0].health.timeout: 2s is longer than interval 1s"},
		{"bad size", "  - name: a\n    path: /bin/a\n    limits: {memory: 2GB2}\n",
			`runtimes[0].limits.memory: size "2GB2"`},
		{"bad size unit", "  - name: a\n    path: /bin/a\n    limits: {memory: 2gb}\n",
			`runtimes[0].limits.memory: size "2gb": unit "gb" is not one of`},
		{"protocol version 0", "  - name: a\n    path: /bin/a\n    protocol_versions: [46, 0]\n",
			"runtimes[0].protocol_versions[1]: 0 is not a protocol version"},
		{"handshake auth", "  - name: a\n    path: /bin/a\n    handshake_auth: maybe\n",
			`runtimes[0].handshake_auth: handshake auth "maybe", want token`},
		{"sha256", "  - name: a\n    path: /bin/a\n    sha256: abc\n", "runtimes[0].sha256: "},
		{"env policy", "  - name: a\n    path: /bin/a\n    env_policy: dirty\n", `runtimes[0].env_policy: env policy "dirty"`},
		{"env keep without clean", "  - name: a\n    path: /bin/a\n    env_keep: [PATH]\n", "runtimes[0]: "},
		{"env sets the engine address", "  - name: a\n    path: /bin/a\n    env: {AVALANCHE_VM_RUNTIME_ENGINE_ADDR: x}\n",
			"runtimes[0]: env AVALANCHE_VM_RUNTIME_ENGINE_ADDR is set by the engine itself"},
		{"env value not a string", "  - name: a\n    path: /bin/a\n    env: {GOMAXPROCS: 2}\n",
			"runtimes[0].env.GOMAXPROCS: want a string, got the number 2 (quote it)"},
		{"args not a list", "  - name: a\n    path: /bin/a\n    args: --flag\n", `runtimes[0].args: want a list, got "--flag"`},
		{"vm_shutdown not a bool", "  - name: a\n    path: /bin/a\n    vm_shutdown: sometimes\n",
			`runtimes[0].vm_shutdown: want true or false, got "sometimes"`},
		{"log format", "  - name: a\n    path: /bin/a\n    log: {format: xml}\n", `runtimes[0].log.format: log format "xml" is not one of auto, raw, plain, json`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			path := writeFile(t, "runtimes:\n"+tt.body)
			_, err := config.Load(path)
			if !errors.Is(err, vmre.ErrInvalidConfig) {
				t.Fatalf("Load: %v, want %v", err, vmre.ErrInvalidConfig)
			}
			if want := path + ": " + tt.want; !strings.Contains(err.Error(), want) {
				t.Errorf("error:\n%v\nwant it to contain:\n%s", err, want)
			}
		})
	}
}

func TestLoadBadDocuments(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name, body, want string
	}{
		{"empty", "", "the file is empty"},
		{"not yaml", "runtimes: [\n", "yaml"},
		{"duplicate key", "runtimes: []\nruntimes: []\n", "duplicate"},
		{"top-level typo", "runtime: []\n", "runtime: unknown field; want one of runtimes"},
		{"runtimes not a list", "runtimes: {name: a}\n", "runtimes: want a list, got a mapping"},
		{"runtime not a mapping", "runtimes: [a]\n", `runtimes[0]: want a mapping, got "a"`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			_, err := config.Load(writeFile(t, tt.body))
			if !errors.Is(err, vmre.ErrInvalidConfig) || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("Load: %v, want %v containing %q", err, vmre.ErrInvalidConfig, tt.want)
			}
		})
	}
}

func TestLoadReportsEveryBadField(t *testing.T) {
	t.Parallel()
	_, err := config.Load(writeFile(t, "runtimes:\n  - name: A\n  - name: b\n    path: /bin/b\n    restart: {policy: x}\n"))
	for _, want := range []string{"runtimes[0].name", "runtimes[0].path", "runtimes[1].restart.policy"} {
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("error %v does not name %s", err, want)
		}
	}
}

func TestLoadMissingFile(t *testing.T) {
	t.Parallel()
	_, err := config.Load(filepath.Join(t.TempDir(), "nope.yaml"))
	if !errors.Is(err, os.ErrNotExist) {
		t.Errorf("Load: %v, want %v", err, os.ErrNotExist)
	}
}

// TestLoadDirectory: a directory opens but cannot be read; the error
// names it once.
func TestLoadDirectory(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	_, err := config.Load(dir)
	if err == nil || strings.Count(err.Error(), dir) != 1 || !strings.HasPrefix(err.Error(), "read config: ") {
		t.Errorf("Load(%q): %v, want one error naming the directory once", dir, err)
	}
}

func TestParseSize(t *testing.T) {
	t.Parallel()
	tests := []struct {
		in      string
		want    int64
		wantErr error
	}{
		{"1000000", 1000000, nil},
		{"512B", 512, nil},
		{"2GiB", 2 << 30, nil},
		{"512MiB", 512 << 20, nil},
		{"4KiB", 4096, nil},
		{"1TiB", 1 << 40, nil},
		{"3GB", 3e9, nil},
		{"5KB", 5000, nil},
		{"", 0, vmre.ErrInvalidConfig},
		{"0", 0, vmre.ErrInvalidConfig},
		{"-1GiB", 0, vmre.ErrInvalidConfig},
		{"1.5GiB", 0, vmre.ErrInvalidConfig},
		{"2 GiB", 0, vmre.ErrInvalidConfig},
		{"2gib", 0, vmre.ErrInvalidConfig},
		{"GiB", 0, vmre.ErrInvalidConfig},
		{"9000000TiB", 0, vmre.ErrInvalidConfig},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			t.Parallel()
			got, err := config.ParseSize(tt.in)
			if !errors.Is(err, tt.wantErr) || got != tt.want {
				t.Errorf("ParseSize(%q) = %d, %v; want %d, %v", tt.in, got, err, tt.want, tt.wantErr)
			}
		})
	}
}
