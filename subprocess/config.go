package subprocess

import (
	"crypto/tls"
	"fmt"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/rs/zerolog"
	"github.com/vmre/vmre"
	"github.com/vmre/vmre/internal/envpolicy"
	"github.com/vmre/vmre/internal/handshakeauth"
	"github.com/vmre/vmre/internal/logline"
	"github.com/vmre/vmre/internal/preflight"
	"github.com/vmre/vmre/server"
)

// Defaults applied by [Bootstrap] to zero fields of [Config].
const (
	// DefaultMaxLineBytes is the longest output line logged as one entry;
	// longer lines are split into chunks of at most this size.
	DefaultMaxLineBytes = logline.DefaultMaxLineBytes
	// DefaultTailLines is how many of the last output lines an
	// [vmre.ExitError] carries.
	DefaultTailLines = logline.DefaultTailLines
	// MaxTailLines is the largest valid Config.TailLines. Each kept line
	// holds up to 1 KiB, so the tail holds at most about 10 MiB.
	MaxTailLines = 10_000
)

// HandshakeAuth says who may complete a launch's handshake. Its text forms
// (String, UnmarshalText, so flag.TextVar and config decoders parse it) are
// "token", "peer", "token-or-peer" and "none"; the zero value, and "", mean
// the default: token-or-peer on Linux, token elsewhere. Parsing a peer mode
// outside Linux fails with [vmre.ErrInvalidConfig].
type HandshakeAuth = handshakeauth.Mode

// The handshake authentication modes; see "Who may handshake" in the
// package documentation.
const (
	HandshakeAuthToken       HandshakeAuth = handshakeauth.ModeToken
	HandshakeAuthPeer        HandshakeAuth = handshakeauth.ModePeer
	HandshakeAuthTokenOrPeer HandshakeAuth = handshakeauth.ModeTokenOrPeer
	HandshakeAuthNone        HandshakeAuth = handshakeauth.ModeNone
)

// SHA256 pins a plugin binary's contents (Config.SHA256); the zero value
// is no pin. Its text form (String, UnmarshalText, so flag.TextVar and
// config decoders parse it) is 64 hex digits, optionally prefixed
// "sha256:", in either case; "" parses as no pin. Parsing fails with
// [vmre.ErrInvalidConfig]. Compare two with ==.
type SHA256 = preflight.Digest

// EnvPolicy says how much of the base environment a plugin inherits. Its
// text forms (String, UnmarshalText) are "inherit" and "clean"; "" parses
// as the zero value, EnvInherit.
type EnvPolicy = envpolicy.Mode

// The environment policies; see "Environment" in the package
// documentation.
const (
	EnvInherit EnvPolicy = envpolicy.ModeInherit
	EnvClean   EnvPolicy = envpolicy.ModeClean
)

// Config configures [Bootstrap]. The zero value of every field means its
// documented default; Bootstrap applies the defaults to a copy, so a Config
// may be shared between launches and is never modified.
type Config struct {
	// Name is the runtime's name, logged in the "vm" field of every line.
	// Default: the base name of cmd.Path.
	Name string
	// Log receives the plugin's output, line by line, and the few events of
	// the launch. The zero value logs nothing.
	//
	// The bridge writes one event (one Write call) per line. For plugins that
	// write a lot, give Log a buffered or asynchronous writer (for example
	// zerolog's diode writer) rather than a bare *os.File. To stamp lines
	// with their time, prefer a logtime.Hook to With().Timestamp(): it uses
	// the time each line was read and formats it once a second.
	Log zerolog.Logger
	// AcceptedVersions is the set of protocol versions the engine accepts.
	// Default (nil): {vmre.ProtocolVersion}. A non-nil empty set, or one
	// holding 0, is invalid.
	AcceptedVersions []uint32
	// HandshakeTimeout bounds the time from starting the process to its
	// Initialize call. Default: vmre.DefaultHandshakeTimeout.
	HandshakeTimeout time.Duration
	// GracefulTimeout is how long Stop waits after SIGTERM before it
	// SIGKILLs the process group. Default: vmre.DefaultGracefulTimeout.
	GracefulTimeout time.Duration
	// EnvVars are the names of the environment variables set to the
	// handshake address. Default (nil): vmre.EngineAddressKeys(). A non-nil
	// empty list is invalid.
	EnvVars []string
	// VMShutdown, if set, makes Stop first call the VM service's Shutdown
	// method (/vm.VM/Shutdown, over gRPC) on the plugin's VM address, as an
	// avalanchego or luxd node does before it stops a VM, and send SIGTERM
	// once the call returns. Plugins built on avalanchego's
	// rpcchainvm.Serve (v1.15.0; luxd's is a fork of it) ignore SIGTERM
	// until that call; without it they wait out GracefulTimeout and are
	// killed. The call is bounded by GracefulTimeout and abandoned if the
	// process exits; a VM server without the method answers unimplemented
	// at once. Only an address the plugin or one of its descendants
	// listens on is called (see [Process.CheckVMAddr]; where that cannot
	// be told, off Linux, a loopback one): the plugin announced it, and
	// may have named another local service. Otherwise Stop logs why at
	// warn ("vm shutdown not called") and sends SIGTERM at once.
	VMShutdown bool
	// VMTLS is the client side of TLS for the Shutdown call to a VM that
	// announced a "tls://host:port" address (vmre.TLSAddrPrefix): roots
	// and client certificate. Nil: the system's roots, no client
	// certificate.
	VMTLS *tls.Config
	// LogFormat is how the plugin's output lines are read: Auto (the
	// default) recognises each line's format, a fixed format parses every
	// line as that one, Raw parses nothing. See [Line].
	LogFormat LogFormat
	// MaxLineBytes caps the size of one logged line; longer lines are split
	// into chunks (Line.Partial), never dropped. Default: DefaultMaxLineBytes.
	MaxLineBytes int
	// TailLines is how many of the last lines of stdout and stderr (one
	// window, in the order they were read) an error reporting a process
	// that exited carries. Default: DefaultTailLines; at most MaxTailLines.
	TailLines int
	// OnOutput, if set, is called for every output line after it has been
	// logged, in order within each stream, from the goroutine reading that
	// stream. It must not block: the plugin stalls when its pipe fills.
	// The Line and its byte slices are valid only until OnOutput returns:
	// the bridge reuses that memory for the next line; keep a
	// Line.Clone().
	OnOutput func(*Line)

	// HandshakeAuth says who may complete the handshake (see "Who may
	// handshake" in the package documentation). Default (zero):
	// HandshakeAuthTokenOrPeer on Linux, HandshakeAuthToken elsewhere; the
	// peer modes are invalid outside Linux.
	HandshakeAuth HandshakeAuth
	// SHA256 pins the plugin binary: Bootstrap hashes the file it is about
	// to execute and refuses to start it on a mismatch
	// (vmre.ErrChecksumMismatch). Zero: no pin. The other pre-flight checks
	// run either way.
	SHA256 SHA256
	// EnvPolicy is EnvInherit (the zero value) or EnvClean. EnvInherit
	// passes the base environment (cmd.Env, or os.Environ() if cmd.Env is
	// nil) on; EnvClean passes only the variables EnvKeep names.
	EnvPolicy EnvPolicy
	// EnvKeep names the variables the clean policy keeps; a trailing "*"
	// matches a prefix ("LC_*"). Nil: PATH, HOME, USER, LOGNAME, TMPDIR,
	// TZ, LANG, LC_* (on Windows, the system variables programs need).
	// Setting it with the inherit policy is invalid.
	EnvKeep []string
	// Env holds KEY=VALUE entries added to the plugin's environment under
	// either policy, overriding the base environment; the last entry for
	// a key wins. The handshake variables (EnvVars, the engine-address
	// names and vmre.HandshakeTokenKey) are the engine's and may not be
	// set here.
	Env []string

	// Limits caps the plugin's resources (see [Limits]); the zero value
	// caps nothing.
	Limits Limits
	// CgroupRoot, if set, is a writable cgroup v2 directory (Linux only)
	// in which each launch creates a cgroup of its own, named after the
	// plugin and a random suffix, starts the plugin in it, and removes it
	// once the plugin has been reaped. The cgroup then holds the plugin's
	// memory.max and pids.max (see [Limits]), a stop kills the whole
	// cgroup through cgroup.kill (which also catches children that left
	// the process group), and the plugin's usage is read from it. The
	// memory and pids controllers must be enabled in CgroupRoot's
	// cgroup.subtree_control for those limits; without them a limit is an
	// error, and the cgroup still serves kills and usage. Empty: no
	// cgroup.
	CgroupRoot string
	// Refusals, if set, counts the callers the handshake server refuses
	// (see [server.Refusals]); share one between launches to count them
	// all.
	Refusals *server.Refusals

	// failedAnswerWait overrides defaultFailedAnswerWait; only tests set
	// it (export_test.go).
	failedAnswerWait time.Duration
}

// Validate checks c as [Bootstrap] does before it starts anything, so
// that a command can reject bad settings up front. A nil Config is valid
// (all defaults). Errors wrap [vmre.ErrInvalidConfig]. It does not look at
// the plugin binary: the pre-flight checks run in Bootstrap.
func (c *Config) Validate() error {
	_, err := c.withDefaults("")
	return err
}

// settings is a Config with its defaults applied and its environment
// policy built, as a launch uses it.
type settings struct {
	Config
	env *envpolicy.Policy
}

// withDefaults returns a validated copy of c (nil means all defaults) with
// every default applied and its environment policy built. Errors wrap
// [vmre.ErrInvalidConfig].
func (c *Config) withDefaults(path string) (settings, error) {
	var out Config
	if c != nil {
		out = *c
	}
	if out.Name == "" {
		out.Name = filepath.Base(path)
	}
	if out.AcceptedVersions == nil {
		out.AcceptedVersions = []uint32{vmre.ProtocolVersion}
	} else {
		out.AcceptedVersions = slices.Clone(out.AcceptedVersions)
	}
	if out.HandshakeTimeout == 0 {
		out.HandshakeTimeout = vmre.DefaultHandshakeTimeout
	}
	if out.GracefulTimeout == 0 {
		out.GracefulTimeout = vmre.DefaultGracefulTimeout
	}
	if out.EnvVars == nil {
		out.EnvVars = vmre.EngineAddressKeys()
	} else {
		out.EnvVars = slices.Clone(out.EnvVars)
	}
	if out.MaxLineBytes == 0 {
		out.MaxLineBytes = DefaultMaxLineBytes
	}
	if out.TailLines == 0 {
		out.TailLines = DefaultTailLines
	}
	if out.HandshakeAuth == 0 {
		out.HandshakeAuth = handshakeauth.DefaultMode()
	}
	out.EnvKeep = slices.Clone(out.EnvKeep)
	out.Env = slices.Clone(out.Env)
	if err := out.validate(); err != nil {
		return settings{}, err
	}
	return out.parsePolicies()
}

// parsePolicies checks the handshake-auth mode and builds the environment
// policy.
func (c *Config) parsePolicies() (settings, error) {
	s := settings{Config: *c}
	if err := c.HandshakeAuth.Check(); err != nil {
		return settings{}, err
	}
	var err error
	if s.env, err = envpolicy.New(envpolicy.Config{Mode: c.EnvPolicy, Keep: c.EnvKeep, Set: c.Env}); err != nil {
		return settings{}, err
	}
	// A name in EnvVars is set by the engine after the policy ran, so an
	// explicit entry for it would silently lose.
	for _, kv := range c.Env {
		key, _, _ := strings.Cut(kv, "=")
		if slices.Contains(c.EnvVars, key) {
			return settings{}, fmt.Errorf("%w: env %s carries the engine address and is set by the engine itself", vmre.ErrInvalidConfig, key)
		}
	}
	return s, nil
}

// maxMaxLineBytes bounds MaxLineBytes: the reader's buffer is twice as big.
const maxMaxLineBytes = 16 << 20

func (c *Config) validate() error {
	switch {
	case len(c.AcceptedVersions) == 0:
		return fmt.Errorf("%w: accepted versions is empty", vmre.ErrInvalidConfig)
	case slices.Contains(c.AcceptedVersions, 0):
		return fmt.Errorf("%w: protocol version 0 in accepted versions", vmre.ErrInvalidConfig)
	case c.HandshakeTimeout < 0:
		return fmt.Errorf("%w: handshake timeout %s is negative", vmre.ErrInvalidConfig, c.HandshakeTimeout)
	case c.GracefulTimeout < 0:
		return fmt.Errorf("%w: graceful timeout %s is negative", vmre.ErrInvalidConfig, c.GracefulTimeout)
	case len(c.EnvVars) == 0:
		return fmt.Errorf("%w: no environment variable to pass the engine address in", vmre.ErrInvalidConfig)
	case c.MaxLineBytes < 0 || c.MaxLineBytes > maxMaxLineBytes:
		return fmt.Errorf("%w: max line bytes %d is outside 0..%d (0: the default)", vmre.ErrInvalidConfig, c.MaxLineBytes, maxMaxLineBytes)
	case c.Limits.Validate() != nil:
		return c.Limits.Validate()
	case c.TailLines < 0 || c.TailLines > MaxTailLines:
		// The tail's ring is allocated up front, at every launch.
		return fmt.Errorf("%w: tail lines %d is outside 0..%d (0: the default)", vmre.ErrInvalidConfig, c.TailLines, MaxTailLines)
	case !c.LogFormat.Valid():
		return fmt.Errorf("%w: log format %d is unknown", vmre.ErrInvalidConfig, c.LogFormat)
	}
	for _, name := range c.EnvVars {
		if name == "" || strings.ContainsAny(name, "=\x00") {
			return fmt.Errorf("%w: bad environment variable name %q", vmre.ErrInvalidConfig, name)
		}
	}
	return nil
}
