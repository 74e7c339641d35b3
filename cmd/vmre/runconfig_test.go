package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
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
		{"per-launch flags", []string{"--config", good, "--sha256", "00", "--vm-shutdown=false"}, "--sha256, --vm-shutdown: with --config each runtime's launch settings are fields of the file"},
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
