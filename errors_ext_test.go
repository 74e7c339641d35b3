package vmre_test

import (
	"errors"
	"fmt"
	"testing"

	"github.com/vmre/vmre"
)

func TestVersionMismatchError(t *testing.T) {
	t.Parallel()
	err := fmt.Errorf("%w: %w", vmre.ErrHandshakeFailed, &vmre.VersionMismatchError{Accepted: []uint32{42, 43}, Got: 41})
	if want := "handshake failed: protocol version mismatch engine: 42,43 vm: 41"; err.Error() != want {
		t.Errorf("Error() = %q, want %q", err.Error(), want)
	}
	for _, target := range []error{vmre.ErrHandshakeFailed, vmre.ErrProtocolVersionMismatch} {
		if !errors.Is(err, target) {
			t.Errorf("errors.Is(%v, %v) = false", err, target)
		}
	}
	var mismatch *vmre.VersionMismatchError
	if !errors.As(err, &mismatch) || mismatch.Got != 41 {
		t.Errorf("errors.As did not recover the versions from %v", err)
	}
}

func TestExitError(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		err  *vmre.ExitError
		want string
	}{
		{"code", &vmre.ExitError{ExitStatus: vmre.ExitStatus{Code: 3}}, "process exited: exit status 3"},
		{"signal", &vmre.ExitError{ExitStatus: vmre.ExitStatus{Code: -1, Signal: "killed"}}, "process exited: signal: killed"},
		{"tail", &vmre.ExitError{ExitStatus: vmre.ExitStatus{Code: 2}, Tail: []vmre.TailLine{{Stream: "stderr", Text: "boom"}, {Stream: "stdout", Text: "bye"}}}, "process exited: exit status 2; output: stderr: boom | stdout: bye"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			if got := tt.err.Error(); got != tt.want {
				t.Errorf("Error() = %q, want %q", got, tt.want)
			}
			if !errors.Is(tt.err, vmre.ErrProcessExited) {
				t.Error("ExitError does not match ErrProcessExited")
			}
		})
	}
}

func TestTimeoutError(t *testing.T) {
	t.Parallel()
	for _, tt := range []struct {
		err  *vmre.TimeoutError
		want string
	}{
		{&vmre.TimeoutError{}, "timeout"},
		{&vmre.TimeoutError{Tail: []vmre.TailLine{{Stream: "stdout", Text: "waiting"}, {Stream: "stderr", Text: "still"}}}, "timeout; output: stdout: waiting | stderr: still"},
	} {
		if got := tt.err.Error(); got != tt.want {
			t.Errorf("Error() = %q, want %q", got, tt.want)
		}
		if !errors.Is(tt.err, vmre.ErrHandshakeTimeout) || !errors.Is(tt.err, vmre.ErrProcessNotFound) {
			t.Errorf("%q does not match ErrHandshakeTimeout and ErrProcessNotFound", tt.want)
		}
	}
}

func TestEngineAddressKeysIsACopy(t *testing.T) {
	t.Parallel()
	keys := vmre.EngineAddressKeys()
	keys[0] = "CHANGED"
	if got := vmre.EngineAddressKeys()[0]; got != vmre.EngineAddressKey {
		t.Errorf("EngineAddressKeys()[0] = %q after mutating a previous result", got)
	}
}
