package main

import (
	"crypto/sha256"
	"encoding/hex"
	"math"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/vmre/vmre"
	"github.com/vmre/vmre/internal/preflight/preflighttest"
)

// TestLaunchFlagsUsageErrors: a bad --handshake-auth, --sha256,
// --env-policy, --env-keep or --env is a usage error (exit 2) with a
// message naming the setting, before anything is launched or listened on.
func TestLaunchFlagsUsageErrors(t *testing.T) {
	marker := filepath.Join(t.TempDir(), "ran")
	plugin := writeScript(t, "touch "+marker+"\n")
	tests := []struct {
		name     string
		args     []string
		wantText string
	}{
		{"unknown auth mode", []string{"--handshake-auth", "trust-me"}, `handshake auth "trust-me", want token, peer, token-or-peer or none`},
		{"malformed sha256", []string{"--sha256", "deadbeef"}, `sha256 pin "deadbeef", want 64 hex digits`},
		{"unknown env policy", []string{"--env-policy", "dirty"}, `env policy "dirty", want inherit or clean`},
		{"env-keep without clean", []string{"--env-keep", "PATH"}, "needs the clean env policy"},
		{"env without =", []string{"--env", "JUSTKEY"}, `env "JUSTKEY" is not KEY=VALUE`},
		{"env sets the token", []string{"--env", vmre.HandshakeTokenKey + "=x"}, "is set by the engine itself"},
		{"env sets the engine address", []string{"--env", vmre.AvalancheEngineAddressKey + "=1.2.3.4:5"}, "is set by the engine itself"},
		{"env sets a custom address variable", []string{"--env-var", "MY_ENGINE", "--env", "MY_ENGINE=1.2.3.4:5"}, "set by the engine itself"},
	}
	for _, cmd := range []string{"doctor", "run"} {
		for _, tt := range tests {
			t.Run(cmd+"/"+tt.name, func(t *testing.T) {
				args := append([]string{cmd, "--listen", "127.0.0.1:0"}, tt.args...)
				if cmd == "doctor" {
					args = append([]string{cmd}, tt.args...)
				}
				code, _, errOut := vmreCmd(t, append(args, "--", plugin)...)
				if code != exitUsage {
					t.Errorf("exit code %d, want %d", code, exitUsage)
				}
				if !strings.Contains(errOut, tt.wantText) {
					t.Errorf("stderr lacks %q", tt.wantText)
				}
			})
		}
	}
	t.Run("attach with a peer policy", func(t *testing.T) {
		code, _, errOut := vmreCmd(t, "run", "--listen", "127.0.0.1:0", "--attach", "--handshake-auth", "none")
		if code != exitUsage || !strings.Contains(errOut, "--attach always requires the token") {
			t.Errorf("exit code %d, stderr %q", code, errOut)
		}
	})
	if _, err := os.Stat(marker); err == nil {
		t.Error("the plugin was started")
	}
}

// TestSHA256Pin: a plugin whose binary does not match --sha256 is not
// started (doctor and run exit 1 saying what the hash is and what was
// pinned); a matching one runs.
func TestSHA256Pin(t *testing.T) {
	marker := filepath.Join(t.TempDir(), "ran")
	plugin := writeScript(t, "touch "+marker+"\n")
	other := sha256.Sum256([]byte("the build that was reviewed"))
	pin := hex.EncodeToString(other[:])
	wantText := "checksum mismatch: sha256 of " + plugin + " is " + preflighttest.FileSHA256(t, plugin) + ", want " + pin

	t.Run("doctor mismatch", func(t *testing.T) {
		code, _, errOut := vmreCmd(t, "doctor", "--sha256", pin, "--", plugin)
		if code != exitFailure || !strings.Contains(errOut, wantText) {
			t.Errorf("exit code %d, want %d; stderr lacks %q", code, exitFailure, wantText)
		}
	})
	t.Run("run mismatch", func(t *testing.T) {
		code, _, errOut := vmreCmd(t, "run", "--listen", "127.0.0.1:0", "--log-format", "json", "--exit-on-failure", "--sha256", pin, "--", plugin)
		if code != exitFailure || !strings.Contains(errOut, wantText) {
			t.Errorf("exit code %d, want %d; stderr lacks %q", code, exitFailure, wantText)
		}
	})
	if _, err := os.Stat(marker); err == nil {
		t.Fatal("a plugin that failed its pin was started")
	}
	t.Run("doctor match", func(t *testing.T) {
		code, out, _ := vmreCmd(t, "doctor", "--log-level", "warn", "--sha256", "sha256:"+preflighttest.FileSHA256(t, os.Args[0]), "--", os.Args[0], exampleVMCommand)
		if code != exitOK || !strings.Contains(out, "result             OK") {
			t.Errorf("exit code %d, report %q", code, out)
		}
	})
}

// TestEnvPolicyClean: with --env-policy clean the plugin's environment
// holds only the allowlisted variables, the --env entries and the
// engine's handshake variables: a secret in the engine's environment does
// not reach it.
func TestEnvPolicyClean(t *testing.T) {
	t.Setenv("VMRE_TEST_CANARY_SECRET", "must-not-leak")
	t.Setenv("LC_TIME", "C")
	dump := filepath.Join(t.TempDir(), "env")
	// The script records its environment and becomes the example VM (the
	// test binary acting as vmre), which handshakes with the token.
	plugin := writeScript(t, "/usr/bin/env > \"$DUMP\"\nexec \"$VMRE_BIN\" "+exampleVMCommand+"\n")
	code, out, _ := vmreCmd(t, "doctor", "--log-level", "warn", "--env-policy", "clean", "--env-keep", "PATH,LC_*",
		"--env", "DUMP="+dump, "--env", "VMRE_BIN="+os.Args[0], "--env", asVMRE+"=1", "--", plugin)
	if code != exitOK || !strings.Contains(out, "result             OK") {
		t.Fatalf("doctor exit code %d, report %q", code, out)
	}
	b, err := os.ReadFile(dump)
	if err != nil {
		t.Fatal(err)
	}
	var keys []string
	for line := range strings.SplitSeq(strings.TrimSpace(string(b)), "\n") {
		key, _, _ := strings.Cut(line, "=")
		keys = append(keys, key)
	}
	slices.Sort(keys)
	want := append([]string{"PATH", "LC_TIME", "DUMP", "VMRE_BIN", asVMRE, vmre.HandshakeTokenKey}, vmre.EngineAddressKeys()...)
	// The shell adds its own bookkeeping variables.
	shell := []string{"PWD", "SHLVL", "_", "OLDPWD"}
	for _, k := range keys {
		if !slices.Contains(want, k) && !slices.Contains(shell, k) {
			t.Errorf("plugin environment has %s; want only %v", k, want)
		}
	}
	for _, k := range want {
		if !slices.Contains(keys, k) {
			t.Errorf("plugin environment lacks %s (has %v)", k, keys)
		}
	}
	if runtime.GOOS == "linux" && !strings.Contains(string(b), "PATH="+os.Getenv("PATH")) {
		t.Errorf("PATH not passed on unchanged")
	}
}

// TestStopDeadline: both grace periods with --vm-shutdown, one without,
// plus the margin; saturated, never wrapped, for absurd grace periods.
func TestStopDeadline(t *testing.T) {
	t.Parallel()
	forever := time.Duration(math.MaxInt64)
	for _, tt := range []struct {
		grace      time.Duration
		vmShutdown bool
		want       time.Duration
	}{
		{5 * time.Second, true, 10*time.Second + stopMargin},
		{5 * time.Second, false, 5*time.Second + stopMargin},
		{1300000 * time.Hour, true, forever},
		{forever, false, forever},
		{forever - stopMargin, false, forever},
	} {
		f := engineFlags{gracefulTimeout: tt.grace, vmShutdown: tt.vmShutdown}
		if got := f.stopDeadline(); got != tt.want {
			t.Errorf("grace %v, vm-shutdown %v: stopDeadline = %v, want %v", tt.grace, tt.vmShutdown, got, tt.want)
		}
	}
}

func TestSplitList(t *testing.T) {
	t.Parallel()
	if got := splitList(" PATH, HOME,,LC_* ,"); !slices.Equal(got, []string{"PATH", "HOME", "LC_*"}) {
		t.Fatalf("splitList = %q", got)
	}
	if got := splitList(""); got != nil {
		t.Fatalf("splitList(\"\") = %q, want nil", got)
	}
}
