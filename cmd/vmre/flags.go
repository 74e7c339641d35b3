package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/rs/zerolog"
	"github.com/vmre/vmre"
	"github.com/vmre/vmre/logsink"
	"github.com/vmre/vmre/logtime"
	"github.com/vmre/vmre/subprocess"
)

// engineFlags are the flags shared by the commands that launch plugins.
type engineFlags struct {
	versions         versionList
	handshakeTimeout time.Duration
	gracefulTimeout  time.Duration
	envVars          stringList
	handshakeAuth    subprocess.HandshakeAuth
	sha256           subprocess.SHA256
	envPolicy        subprocess.EnvPolicy
	envKeep          keepList
	env              stringList
	vmShutdown       bool
	cgroupRoot       string
	logFlags
}

func (f *engineFlags) register(fs *flag.FlagSet) {
	f.versions = versionList{vmre.ProtocolVersion}
	fs.Var(&f.versions, "protocol-version", "accepted plugin protocol versions, comma-separated")
	fs.DurationVar(&f.handshakeTimeout, "handshake-timeout", vmre.DefaultHandshakeTimeout, "how long a plugin has to call Initialize")
	fs.DurationVar(&f.gracefulTimeout, "graceful-timeout", vmre.DefaultGracefulTimeout, "how long a plugin has to exit after SIGTERM before it is killed")
	fs.Var(&f.envVars, "env-var", "environment variable that carries the engine address (repeatable; default: "+strings.Join(vmre.EngineAddressKeys(), ", ")+")")
	fs.TextVar(&f.handshakeAuth, "handshake-auth", f.handshakeAuth, "who may complete a plugin's handshake: token (the per-launch secret vmre's client sends), peer (Linux: a socket of the launched process tree), token-or-peer (Linux) or none (anyone: avalanchego's behaviour); the default is token-or-peer on Linux, token elsewhere")
	fs.TextVar(&f.sha256, "sha256", subprocess.SHA256{}, "refuse to start the plugin unless the SHA-256 of its binary is this (64 hex digits, optionally prefixed sha256:)")
	fs.TextVar(&f.envPolicy, "env-policy", f.envPolicy, "the plugin's environment: inherit (the engine's) or clean (only the --env-keep variables)")
	fs.Var(&f.envKeep, "env-keep", "with --env-policy clean, the variables to keep, comma-separated; a trailing * matches a prefix (default: PATH,HOME,USER,LOGNAME,TMPDIR,TZ,LANG,LC_*)")
	fs.Var(&f.env, "env", "KEY=VALUE to set in the plugin's environment under either policy (repeatable)")
	fs.BoolVar(&f.vmShutdown, "vm-shutdown", true, "before SIGTERM, call the plugin VM's /vm.VM/Shutdown, as avalanchego and luxd nodes do (their rpcchainvm plugins ignore SIGTERM until then); the call gets up to --graceful-timeout, then SIGTERM gets another; --vm-shutdown=false to only signal")
	fs.StringVar(&f.cgroupRoot, "cgroup-root", "", "a writable cgroup v2 directory (Linux) in which each plugin gets a cgroup of its own: memory and process limits for its whole tree, kills that catch children which left its process group, usage read from it (default: none)")
	f.logFlags.register(fs)
}

// stopMargin is what a stop may take beyond its grace periods.
const stopMargin = subprocess.StopMargin

// stopDeadline bounds a whole stop sequence. With --vm-shutdown the VM's
// Shutdown call gets up to one grace period before SIGTERM, which gets
// another (see subprocess.Config.StopBound).
func (f *engineFlags) stopDeadline() time.Duration {
	return stopDeadline(f.gracefulTimeout, f.vmShutdown)
}

// stopDeadline bounds the stop sequence of a plugin with this grace
// period and --vm-shutdown setting.
func stopDeadline(grace time.Duration, vmShutdown bool) time.Duration {
	return (&subprocess.Config{GracefulTimeout: grace, VMShutdown: vmShutdown}).StopBound()
}

// validate checks the launch settings right after parsing, so a bad value
// is a usage error before anything is started. The plugin binary itself is
// checked at launch.
func (f *engineFlags) validate() error {
	return f.subprocessConfig("", zerolog.Nop()).Validate()
}

// subprocessConfig returns the launch configuration for the plugin at path.
func (f *engineFlags) subprocessConfig(path string, log zerolog.Logger) *subprocess.Config {
	envVars := []string(f.envVars)
	if len(envVars) == 0 {
		envVars = vmre.EngineAddressKeys()
	}
	return &subprocess.Config{
		Name:             filepath.Base(path),
		Log:              log,
		AcceptedVersions: append([]uint32(nil), f.versions...),
		HandshakeTimeout: f.handshakeTimeout,
		GracefulTimeout:  f.gracefulTimeout,
		EnvVars:          envVars,
		HandshakeAuth:    f.handshakeAuth,
		SHA256:           f.sha256,
		EnvPolicy:        f.envPolicy,
		EnvKeep:          f.envKeep.list(),
		Env:              append([]string(nil), f.env...),
		VMShutdown:       f.vmShutdown,
		CgroupRoot:       f.cgroupRoot,
	}
}

// logFlags select the engine's own log output.
type logFlags struct {
	logFormat string
	logLevel  string
}

func (f *logFlags) register(fs *flag.FlagSet) {
	fs.StringVar(&f.logFormat, "log-format", "", "log format: console or json (default: console on a terminal, else json)")
	fs.StringVar(&f.logLevel, "log-level", "info", "minimum log level: trace, debug, info, warn, error")
}

// logger builds the engine's logger writing to w (the process's stderr)
// through a batching logsink.Writer, which it returns too: the caller must
// Close it on every return path (Close flushes), and should print its own
// messages for stderr through its Direct writer so that they stay in order
// with the log.
func (f *logFlags) logger(w io.Writer) (zerolog.Logger, *logsink.Writer, error) {
	level, err := zerolog.ParseLevel(f.logLevel)
	if err != nil || f.logLevel == "" {
		return zerolog.Nop(), nil, fmt.Errorf("%w: log level %q", vmre.ErrInvalidConfig, f.logLevel)
	}
	format := f.logFormat
	if format == "" {
		format = "json"
		if isTerminal(w) {
			format = "console"
		}
	}
	sink := logsink.New(w, logsink.DefaultLimit, logsink.DefaultInterval)
	var out io.Writer
	switch format {
	case "json":
		out = sink
	case "console":
		out = levelFlusher{Writer: consoleWriter(sink, !isTerminal(w)), sink: sink}
	default:
		return zerolog.Nop(), nil, fmt.Errorf("%w: log format %q, want console or json", vmre.ErrInvalidConfig, format)
	}
	// The hook writes what With().Timestamp() would, more cheaply, and
	// stamps plugin lines with the time they were read.
	return zerolog.New(out).Level(level).Hook(&logtime.Hook{}), sink, nil
}

// levelFlusher gives the console format the urgency of the JSON one:
// zerolog's ConsoleWriter is not a LevelWriter, so it writes every event
// through Write; this passes the event on, then the level to the sink, which
// writes the batch out for warn and above as it does for a JSON event.
type levelFlusher struct {
	io.Writer // the ConsoleWriter, writing into sink
	sink      *logsink.Writer
}

var _ zerolog.LevelWriter = levelFlusher{}

func (f levelFlusher) WriteLevel(level zerolog.Level, p []byte) (int, error) {
	n, err := f.Write(p)
	if err == nil {
		_, err = f.sink.WriteLevel(level, nil)
	}
	return n, err
}

func isTerminal(w io.Writer) bool {
	f, ok := w.(*os.File)
	if !ok {
		return false
	}
	info, err := f.Stat()
	return err == nil && info.Mode()&os.ModeCharDevice != 0
}

// versionList is a comma-separated list of protocol versions.
type versionList []uint32

func (v *versionList) String() string { return vmre.FormatVersions(*v) }

func (v *versionList) Set(s string) error {
	var out versionList
	for part := range strings.SplitSeq(s, ",") {
		n, err := strconv.ParseUint(strings.TrimSpace(part), 10, 32)
		if err != nil || n == 0 {
			return errors.New("want positive integers separated by commas")
		}
		out = append(out, uint32(n))
	}
	*v = out
	return nil
}

// stringList is a repeatable string flag.
type stringList []string

func (s *stringList) String() string { return strings.Join(*s, ",") }

func (s *stringList) Set(v string) error {
	if v == "" {
		return errors.New("empty value")
	}
	*s = append(*s, v)
	return nil
}

// keepList is the comma-separated --env-keep list. Unset means the
// default allowlist; set, even to "", it replaces it.
type keepList struct {
	names []string
	set   bool
}

func (k *keepList) String() string { return strings.Join(k.names, ",") }

func (k *keepList) Set(v string) error {
	k.names = append(k.names, splitList(v)...)
	k.set = true
	return nil
}

// list returns the names, nil if the flag was not given.
func (k *keepList) list() []string {
	if !k.set {
		return nil
	}
	return append([]string{}, k.names...)
}

// splitList splits a comma-separated list, trimming spaces and dropping
// empty items.
func splitList(s string) []string {
	var out []string
	for item := range strings.SplitSeq(s, ",") {
		if item = strings.TrimSpace(item); item != "" {
			out = append(out, item)
		}
	}
	return out
}

// parseFlags parses args into fs, printing errors and help to stderr. It
// returns false with the exit code when the command should stop.
func parseFlags(fs *flag.FlagSet, args []string, stderr io.Writer) (int, bool) {
	fs.SetOutput(stderr)
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return exitOK, false
		}
		return exitUsage, false
	}
	return exitOK, true
}
