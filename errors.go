package vmre

import (
	"errors"
	"fmt"
	"strconv"
	"strings"
)

// Sentinel errors. Every error returned by vmre's packages wraps at least
// one of them; test with [errors.Is].
var (
	// ErrHandshakeFailed: the plugin did not complete a valid handshake.
	ErrHandshakeFailed = errors.New("handshake failed")
	// ErrProtocolVersionMismatch: the plugin speaks a protocol version the
	// engine does not accept.
	ErrProtocolVersionMismatch = errors.New("protocol version mismatch")
	// ErrHandshakeTimeout: no handshake arrived within the timeout.
	ErrHandshakeTimeout = errors.New("timeout")
	// ErrProcessNotFound: the engine could not reach the plugin, or the
	// plugin never reached the engine.
	ErrProcessNotFound = errors.New("vm process not found")
	// ErrProcessExited: the plugin's process exited before it handshook.
	ErrProcessExited = errors.New("process exited")
	// ErrInvalidConfig: a configuration value is out of range or missing.
	ErrInvalidConfig = errors.New("invalid config")
	// ErrInvalidRequest: a handshake request is malformed (bad address,
	// zero protocol version, ...).
	ErrInvalidRequest = errors.New("invalid request")
	// ErrAlreadyInitialized: the handshake has already completed; a second
	// Initialize is refused.
	ErrAlreadyInitialized = errors.New("already initialized")
	// ErrUnauthenticated: the handshake carried no valid credentials.
	ErrUnauthenticated = errors.New("unauthenticated")
	// ErrPermissionDenied: the caller is not the launched plugin.
	ErrPermissionDenied = errors.New("permission denied")
	// ErrEngineAddressNotSet: a plugin found none of the engine-address
	// environment variables.
	ErrEngineAddressNotSet = errors.New("engine address not set")
	// ErrNotExecutable: the plugin's path is missing, is not a regular
	// file, is not executable, or holds a binary for another OS or
	// architecture.
	ErrNotExecutable = errors.New("not executable")
	// ErrChecksumMismatch: the plugin's SHA-256 differs from the pinned one.
	ErrChecksumMismatch = errors.New("checksum mismatch")
	// ErrForeignVMAddr: the VM address a plugin announced is not a socket
	// that the plugin or one of its descendants listens on (nothing
	// listens there, or another process does), so the engine does not
	// call it.
	ErrForeignVMAddr = errors.New("vm address is not the plugin's")
)

// VersionMismatchError reports a plugin whose protocol version is not in the
// engine's accepted set. It unwraps to [ErrProtocolVersionMismatch].
type VersionMismatchError struct {
	// Accepted lists the versions the engine accepts.
	Accepted []uint32
	// Got is the version the plugin announced.
	Got uint32
}

// Error names both sides, in the form users of avalanchego search for:
// "protocol version mismatch engine: 42 vm: 41".
func (e *VersionMismatchError) Error() string {
	return fmt.Sprintf("%s engine: %s vm: %d", ErrProtocolVersionMismatch.Error(), FormatVersions(e.Accepted), e.Got)
}

// Unwrap returns [ErrProtocolVersionMismatch].
func (e *VersionMismatchError) Unwrap() error { return ErrProtocolVersionMismatch }

// FormatVersions renders a version set as "42" or "42,43".
func FormatVersions(versions []uint32) string {
	parts := make([]string, len(versions))
	for i, v := range versions {
		parts[i] = strconv.FormatUint(uint64(v), 10)
	}
	return strings.Join(parts, ",")
}

// ExitError reports a plugin process that exited before completing its
// handshake, with the evidence needed to see why. It unwraps to
// [ErrProcessExited].
type ExitError struct {
	Pid int
	// ExitStatus is how the process ended.
	ExitStatus
	// Tail holds the last lines the process wrote to stdout and stderr, in
	// the order they were read, oldest first: a plugin may print its
	// reason on either.
	Tail []TailLine
}

// TailLine is one of the last lines a process wrote.
type TailLine struct {
	// Stream is "stdout" or "stderr".
	Stream string
	Text   string
}

// String reads "stderr: text".
func (l TailLine) String() string { return l.Stream + ": " + l.Text }

// Error reads "process exited: exit status 3; output: stdout: ... | stderr:
// ...".
func (e *ExitError) Error() string {
	return appendTail([]byte(ErrProcessExited.Error()+": "+e.ExitStatus.String()), e.Tail)
}

// Unwrap returns [ErrProcessExited].
func (e *ExitError) Unwrap() error { return ErrProcessExited }

// TimeoutError reports a plugin that did not complete its handshake within
// the timeout, with the last lines it wrote, which may say what it was
// waiting for. It unwraps to [ErrHandshakeTimeout] and, as in avalanchego,
// [ErrProcessNotFound].
type TimeoutError struct {
	// Tail holds the last lines the process wrote to stdout and stderr
	// before it was killed, as in [ExitError].
	Tail []TailLine
}

// Error reads "timeout", or "timeout; output: stdout: ... | stderr: ..."
// when the process wrote something.
func (e *TimeoutError) Error() string {
	return appendTail([]byte(ErrHandshakeTimeout.Error()), e.Tail)
}

// Unwrap returns [ErrHandshakeTimeout] and [ErrProcessNotFound].
func (e *TimeoutError) Unwrap() []error { return []error{ErrHandshakeTimeout, ErrProcessNotFound} }

// appendTail appends "; output: " and the lines, separated by " | ", to b
// when there are any, and returns the text.
func appendTail(b []byte, tail []TailLine) string {
	for i, l := range tail {
		if i == 0 {
			b = append(b, "; output: "...)
		} else {
			b = append(b, " | "...)
		}
		b = append(b, l.String()...)
	}
	return string(b)
}
