//go:generate go tool -modfile=tools/go.mod buf generate

// Package vmre is the core of vmre, a VM Runtime Engine: a host that launches
// virtual-machine plugins as subprocesses, lets each one prove with a
// handshake that it speaks a protocol version the host accepts, and then
// supervises and stops it.
//
// This package holds only the contracts shared by the rest of the module:
// the [Initializer] a handshake server calls, the [Stopper] a running plugin
// is controlled through, the [Manager] that tracks and stops them, the
// constants of the handshake (environment variable names, default timeouts,
// [ProtocolVersion]) and the sentinel errors every other package wraps, so
// that callers classify failures with [errors.Is] alone. It imports only the
// standard library.
//
// The pieces that do the work live in sibling packages:
//   - [github.com/vmre/vmre/server] serves the vm.runtime.Runtime handshake
//     over gRPC, gRPC-Web and Connect on one port, backed by an Initializer;
//   - [github.com/vmre/vmre/client] calls it, from a plugin or a tool;
//   - [github.com/vmre/vmre/subprocess] launches a plugin binary and runs the
//     handshake with it.
package vmre
