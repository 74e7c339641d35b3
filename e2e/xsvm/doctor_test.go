package xsvm

import (
	"bytes"
	"os/exec"
	"regexp"
	"testing"
)

// doctor runs `vmre doctor` with flags on xsvm and returns its exit code,
// stdout and stderr.
func doctor(t *testing.T, flags ...string) (int, string, string) {
	t.Helper()
	requireBinaries(t)
	args := append(append([]string{"doctor"}, flags...), "--", xsvmBin)
	cmd := exec.CommandContext(testContext(t), vmreBin, args...)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	if _, exited := err.(*exec.ExitError); err != nil && !exited {
		t.Fatalf("run vmre doctor: %v", err)
	}
	t.Logf("vmre %v\nstdout:\n%s\nstderr:\n%s", args, stdout.String(), stderr.String())
	return cmd.ProcessState.ExitCode(), stdout.String(), stderr.String()
}

func TestDoctor(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name      string
		flags     []string
		wantCode  int
		wantOut   []string // regexps the report must match
		wantErr   string   // regexp stderr must match
		notOutput string   // regexp neither stream may match
	}{
		{
			name:     "protocol 44 handshakes, serves health and stops through Shutdown",
			flags:    []string{"--protocol-version", "44"},
			wantCode: 0,
			wantOut: []string{
				`(?m)^protocol version +44$`,
				`(?m)^grpc\.health\.v1 +SERVING$`,
				`(?m)^stop .*\(exit status 0\)$`,
				`(?m)^result +OK$`,
			},
			notOutput: `ignoring signal`,
		},
		{
			// A 10-minute handshake timeout: a doctor that waited for it
			// instead of failing at the mismatch would hit waitBound.
			name:     "protocol 46 fails at once naming both versions",
			flags:    []string{"--protocol-version", "46", "--handshake-timeout", "10m"},
			wantCode: 1,
			wantOut:  []string{`(?m)^result +FAIL$`},
			wantErr:  `handshake failed: protocol version mismatch engine: 46 vm: 44`,
		},
		{
			name:     "without the Shutdown call xsvm ignores SIGTERM and is killed",
			flags:    []string{"--protocol-version", "44", "--vm-shutdown=false", "--graceful-timeout", "1s"},
			wantCode: 1,
			wantOut:  []string{`(?m)^stop .*\(signal: killed\)$`, `(?m)^result +FAIL$`},
			wantErr:  `the plugin was killed`,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			code, stdout, stderr := doctor(t, tt.flags...)
			if code != tt.wantCode {
				t.Errorf("exit code %d, want %d", code, tt.wantCode)
			}
			for _, re := range tt.wantOut {
				if !regexp.MustCompile(re).MatchString(stdout) {
					t.Errorf("report does not match %q", re)
				}
			}
			if tt.wantErr != "" && !regexp.MustCompile(tt.wantErr).MatchString(stderr) {
				t.Errorf("stderr does not match %q", tt.wantErr)
			}
			if tt.notOutput != "" && regexp.MustCompile(tt.notOutput).MatchString(stdout+stderr) {
				t.Errorf("output matches %q", tt.notOutput)
			}
		})
	}
}
