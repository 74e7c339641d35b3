package subprocess

import "github.com/vmre/vmre/internal/logline"

// Line is one parsed line of a plugin's output: the plugin's level,
// message, fields, logger, caller and time, or a Go panic with its
// goroutine dump, or one chunk of a line longer than Config.MaxLineBytes.
// Config.OnOutput receives it; the engine keeps it in its output ring.
type Line = logline.Line

// Names of the two output streams, as in [Line.Stream] and the "stream" log
// field.
const (
	StreamStdout = logline.Stdout
	StreamStderr = logline.Stderr
)

// LogFormat says how a plugin's output lines are read (Config.LogFormat).
// Its text form (String, UnmarshalText) is one of auto, raw, plain, json,
// zap-console, geth, logfmt, klog, hclog, logrus.
type LogFormat = logline.Format

// The log formats; see [LogFormat].
const (
	LogAuto       = logline.Auto
	LogRaw        = logline.Raw
	LogPlain      = logline.Plain
	LogJSON       = logline.JSON
	LogZapConsole = logline.ZapConsole
	LogGeth       = logline.Geth
	LogLogfmt     = logline.Logfmt
	LogKlog       = logline.Klog
	LogHclog      = logline.Hclog
	LogLogrus     = logline.Logrus
)

// Log fields of the process every event of it carries.
const (
	fieldVM  = "vm"
	fieldPid = "pid"
)
