package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/vmre/vmre"
	"github.com/vmre/vmre/config"
)

// TestRunConfigUsage: what --config cannot be combined with, and a bad
// file, are usage errors that name the problem before anything starts.
func TestRunConfigUsage(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	good := filepath.Join(dir, "good.yaml")
	bad := filepath.Join(dir, "bad.yaml")
	marker := filepath.Join(dir, "ran")
	plugin := writeScript(t, "touch "+marker+"\n")
	if err := os.WriteFile(good, []byte("runtimes:\n  - {name: a, path: "+plugin+"}\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(bad, []byte("runtimes:\n  - {name: a, path: "+plugin+"}\n  - {name: b, path: "+plugin+", restart: {policy: sometimes}}\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name string
		args []string
		want string
	}{
		{"plugin command", []string{"--config", good, "--", plugin}, "drop the plugin command or --config"},
		{"attach", []string{"--config", good, "--attach"}, "--config and --attach cannot be combined"},
		{"per-launch flags", []string{"--config", good, "--sha256", strings.Repeat("0", 64), "--vm-shutdown=false"}, "--sha256, --vm-shutdown: with --config each runtime's launch settings are fields of the file"},
		{"bad file", []string{"--config", bad}, bad + `: runtimes[1].restart.policy: "sometimes" is not one of never, on-failure, always`},
		{"missing file", []string{"--config", filepath.Join(dir, "nope.yaml")}, "no such file"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			code, _, errOut := vmreCmd(t, append([]string{"run", "--listen", "127.0.0.1:0", "--log-format", "json"}, tt.args...)...)
			if code != exitUsage || !strings.Contains(errOut, tt.want) {
				t.Errorf("exit code %d, want %d; stderr lacks %q", code, exitUsage, tt.want)
			}
		})
	}
	if _, err := os.Stat(marker); err == nil {
		t.Error("a plugin was started although the command was refused")
	}
}

// TestFileStopDeadline: with --config the shutdown waits for the slowest
// runtime's own stop sequence, not the flags' default.
func TestFileStopDeadline(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name, runtimes string
		want           time.Duration
	}{
		{"defaults", "  - {name: a, path: /bin/a}\n", 2*vmre.DefaultGracefulTimeout + stopMargin},
		{"a long grace", "  - {name: a, path: /bin/a}\n  - {name: b, path: /bin/b, graceful_timeout: 30s}\n", 60*time.Second + stopMargin},
		{"no vm shutdown", "  - {name: a, path: /bin/a, graceful_timeout: 20s, vm_shutdown: false}\n", 20*time.Second + stopMargin},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			f, err := config.Parse("vmre.yaml", []byte("runtimes:\n"+tt.runtimes))
			if err != nil {
				t.Fatal(err)
			}
			if got := fileStopDeadline(f); got != tt.want {
				t.Errorf("fileStopDeadline = %s, want %s", got, tt.want)
			}
		})
	}
}
