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
	"github.com/vmre/vmre/subprocess"
)

// engineFlags are the flags shared by the commands that launch plugins.
type engineFlags struct {
	versions         versionList
	handshakeTimeout time.Duration
	gracefulTimeout  time.Duration
	envVars          stringList
	logFlags
}

func (f *engineFlags) register(fs *flag.FlagSet) {
	f.versions = versionList{vmre.ProtocolVersion}
	fs.Var(&f.versions, "protocol-version", "accepted plugin protocol versions, comma-separated")
	fs.DurationVar(&f.handshakeTimeout, "handshake-timeout", vmre.DefaultHandshakeTimeout, "how long a plugin has to call Initialize")
	fs.DurationVar(&f.gracefulTimeout, "graceful-timeout", vmre.DefaultGracefulTimeout, "how long a plugin has to exit after SIGTERM before it is killed")
	fs.Var(&f.envVars, "env-var", "environment variable that carries the engine address (repeatable; default: "+strings.Join(vmre.EngineAddressKeys(), ", ")+")")
	f.logFlags.register(fs)
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

// logger builds the engine's logger writing to w (the process's stderr).
func (f *logFlags) logger(w io.Writer) (zerolog.Logger, error) {
	level, err := zerolog.ParseLevel(f.logLevel)
	if err != nil || f.logLevel == "" {
		return zerolog.Nop(), fmt.Errorf("%w: log level %q", vmre.ErrInvalidConfig, f.logLevel)
	}
	format := f.logFormat
	if format == "" {
		format = "json"
		if isTerminal(w) {
			format = "console"
		}
	}
	switch format {
	case "json":
	case "console":
		w = zerolog.ConsoleWriter{Out: w, TimeFormat: time.TimeOnly, NoColor: !isTerminal(w)}
	default:
		return zerolog.Nop(), fmt.Errorf("%w: log format %q, want console or json", vmre.ErrInvalidConfig, format)
	}
	return zerolog.New(w).Level(level).With().Timestamp().Logger(), nil
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
