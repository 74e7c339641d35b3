package vmre

import (
	"context"
	"strconv"
	"strings"
	"time"
)

// ProtocolVersion is the VM protocol version that vmre's own tools accept by
// default and that its example VM announces. Hosts of another ecosystem set
// the versions they accept explicitly (avalanchego v1.15 plugins speak 46).
const ProtocolVersion uint32 = 42

// Names of the environment variables through which the engine hands a
// plugin the address of its handshake endpoint. A plugin reads them in the
// order of [EngineAddressKeys]; the engine sets all of them by default, so
// plugins written for avalanchego or luxd find the address unchanged.
const (
	// EngineAddressKey is vmre's own variable.
	EngineAddressKey = "VMRE_ENGINE_ADDR"
	// AvalancheEngineAddressKey is the variable avalanchego plugins read.
	AvalancheEngineAddressKey = "AVALANCHE_VM_RUNTIME_ENGINE_ADDR"
	// LuxEngineAddressKey is the variable luxd plugins read.
	LuxEngineAddressKey = "LUX_VM_RUNTIME_ENGINE_ADDR"
)

// Handshake authentication: the engine gives each launched plugin a fresh
// secret in HandshakeTokenKey, and vmre's client sends it back in the
// HandshakeTokenHeader request header of its Initialize call.
const (
	HandshakeTokenKey    = "VMRE_HANDSHAKE_TOKEN"
	HandshakeTokenHeader = "Vmre-Handshake-Token"
)

// Attached plugins: the name under which a plugin attaches (the same name
// after a restart of the plugin or of the engine means the same runtime),
// and the instance vmre's client sends so that a repeated handshake of the
// same process only refreshes its registration. The plugin reads
// RuntimeNameKey; vmre's client sends both headers.
const (
	RuntimeNameKey       = "VMRE_RUNTIME_NAME"
	RuntimeNameHeader    = "Vmre-Runtime-Name"
	AttachInstanceHeader = "Vmre-Attach-Instance"
)

// TLS for a plugin that handshakes with an engine on another host: vmre's
// client reads these variables and, when any is set, speaks TLS to the
// engine. Each names a PEM file.
const (
	// EngineCAKey names the CA bundle that verifies the engine's
	// certificate; unset, the system's roots do.
	EngineCAKey = "VMRE_ENGINE_CA"
	// EngineCertKey and EngineKeyKey name the plugin's client certificate
	// and key, for an engine that requires client certificates.
	EngineCertKey = "VMRE_ENGINE_CERT"
	EngineKeyKey  = "VMRE_ENGINE_KEY"
)

// TLSAddrPrefix marks a VM address announced in the handshake as served
// over TLS: "tls://host:port". The vm.runtime wire shape stays as it is
// (the address is a string); only vmre's client is ever told to send the
// prefix, and an address without it means cleartext HTTP/2, as avalanchego
// and luxd plugins serve.
const TLSAddrPrefix = "tls://"

// CutTLSAddr returns addr without [TLSAddrPrefix] and whether it had it.
func CutTLSAddr(addr string) (hostPort string, isTLS bool) {
	return strings.CutPrefix(addr, TLSAddrPrefix)
}

// EngineAddressKeys returns the engine-address variable names in the order a
// plugin consults them: vmre's own first, then the avalanchego and luxd
// aliases. It returns a new slice on every call.
func EngineAddressKeys() []string {
	return []string{EngineAddressKey, AvalancheEngineAddressKey, LuxEngineAddressKey}
}

const (
	// DefaultHandshakeTimeout bounds the time from starting a plugin to its
	// Initialize call.
	DefaultHandshakeTimeout = 5 * time.Second
	// DefaultGracefulTimeout is how long a plugin has to exit after the
	// graceful stop signal before it is killed.
	DefaultGracefulTimeout = 5 * time.Second
)

// Initializer receives a plugin's handshake. The handshake server calls it
// once per Initialize request with the version the plugin announced and the
// address of the plugin's own gRPC server.
//
// An implementation returns nil to accept the plugin. To refuse it, it
// returns an error wrapping one of this package's sentinels (for example
// [ErrProtocolVersionMismatch]); the server maps the sentinel to a status
// code. Implementations must be safe for concurrent use.
type Initializer interface {
	Initialize(ctx context.Context, protocolVersion uint32, vmAddr string) error
}

// Stopper stops one running plugin.
//
// Stop asks the plugin to exit and, if it has not exited when its grace
// period ends, kills it. Stop blocks until the process has been reaped or ctx
// is done, whichever is first; when ctx ends first the stop still completes
// in the background. Stop is idempotent and safe for concurrent use: every
// call waits for the same outcome.
type Stopper interface {
	Stop(ctx context.Context)
}

// Runtime is a [Stopper] that also reports when and how its process has
// exited. [Manager] uses it to forget runtimes that are gone.
type Runtime interface {
	Stopper
	// Done is closed once the process has exited and been reaped.
	Done() <-chan struct{}
	// ExitStatus reports how the process ended. It is valid once Done is
	// closed; before that it returns the zero ExitStatus.
	ExitStatus() ExitStatus
}

// ExitStatus is how a plugin process ended.
type ExitStatus struct {
	// Code is the exit code, or -1 if a signal ended the process.
	Code int
	// Signal names the signal that ended the process ("killed",
	// "terminated"), or is empty.
	Signal string
	// ForcedKill is set when a stop had to SIGKILL the process because it
	// was still running when the grace period after its SIGTERM (or its
	// VM's Shutdown call) ran out.
	ForcedKill bool
}

// Success reports a clean exit: status 0, no signal.
func (s ExitStatus) Success() bool { return s.Code == 0 && s.Signal == "" }

// String reads "exit status 3" or "signal: killed", as os/exec words it.
func (s ExitStatus) String() string {
	if s.Signal != "" {
		return "signal: " + s.Signal
	}
	return "exit status " + strconv.Itoa(s.Code)
}

// Tracker records running plugins.
type Tracker interface {
	// TrackRuntime adds a plugin to the set. If it implements [Runtime], it
	// is removed again as soon as its process exits.
	TrackRuntime(runtime Stopper)
}

// Manager tracks running plugins and stops them all.
type Manager interface {
	Tracker
	// Len reports how many tracked runtimes have not exited. A [Runtime]
	// leaves the count when its process exits; a plain [Stopper], which
	// cannot report that, leaves it when a Stop of the manager has stopped
	// it (its Stop returned before ctx was done).
	Len() int
	// Stop stops every tracked runtime concurrently and blocks until all of
	// them have stopped or ctx is done. Runtimes tracked after Stop has
	// begun are stopped at once. A runtime whose stop ctx cut short stays
	// counted: a [Runtime] until its process exits, a plain [Stopper] until
	// a later Stop has stopped it.
	Stop(ctx context.Context)
}
