package config

import (
	"errors"
	"fmt"
	"maps"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/vmre/vmre"
	"github.com/vmre/vmre/engine"
	vmrev1 "github.com/vmre/vmre/gen/vmre/v1"
	"github.com/vmre/vmre/subprocess"
)

// Runtime is one runtime of a [File], parsed and validated.
type Runtime struct {
	// Name is the runtime's unique name in the file.
	Name string
	// Spec is what to pass to engine.Launch: Name, Path (absolute, or a
	// bare name looked up in PATH), Args, the launch settings in Launch
	// (log format included; its Log and output callbacks left zero: the
	// launcher keeps its own), Restart (on-failure unless the file says otherwise), Health
	// and Limits. Zero fields mean the engine's and subprocess's defaults.
	Spec engine.Spec
}

// namePattern is what a runtime name may look like: it appears in logs,
// metrics labels and URLs unquoted. It is compiled on first use, not at
// the start of every vmre command: the bounded repetition makes a large
// program (about 45 KB and 250 allocations).
var namePattern = sync.OnceValue(func() *regexp.Regexp {
	return regexp.MustCompile(`^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$`)
})

// convert validates the runtimes of msg and converts them to [Runtime]s;
// dir anchors relative plugin paths. It reports every bad field it finds.
func convert(msg *vmrev1.Config, dir string) ([]Runtime, error) {
	var errs []error
	out := make([]Runtime, 0, len(msg.GetRuntimes()))
	first := make(map[string]int, len(msg.GetRuntimes()))
	for i, rc := range msg.GetRuntimes() {
		c := checker{errs: &errs, path: "runtimes[" + strconv.Itoa(i) + "]"}
		rt := c.runtime(rc, dir)
		if rc.GetName() != "" {
			if j, dup := first[rc.GetName()]; dup {
				c.fail("name", "%q is also the name of runtimes[%d]", rc.GetName(), j)
			} else {
				first[rc.GetName()] = i
			}
		}
		out = append(out, rt)
	}
	if len(errs) > 0 {
		return nil, errors.Join(errs...)
	}
	return out, nil
}

// checker collects the errors of the fields under path.
type checker struct {
	errs *[]error
	path string
}

func (c checker) fail(field, format string, args ...any) {
	at := c.path
	if field != "" {
		at = join(c.path, field)
	}
	add(c.errs, at, format, args...)
}

// failErr records err, an error of one of the typed values' parsers, as
// the reason field is bad. Those errors start with the text of
// vmre.ErrInvalidConfig, which the whole load error already carries once.
func (c checker) failErr(field string, err error) {
	c.fail(field, "%s", strings.TrimPrefix(err.Error(), vmre.ErrInvalidConfig.Error()+": "))
}

func (c checker) sub(field string) checker {
	return checker{errs: c.errs, path: join(c.path, field)}
}

func (c checker) runtime(rc *vmrev1.RuntimeConfig, dir string) Runtime {
	rt := Runtime{Name: rc.GetName()}
	switch {
	case rc.GetName() == "":
		c.fail("name", "missing; every runtime needs a unique name")
	case !namePattern().MatchString(rc.GetName()):
		c.fail("name", "%q: want 1 to 63 lowercase letters, digits and \"-\", starting and ending with a letter or digit", rc.GetName())
	}
	path := rc.GetPath()
	switch {
	case path == "":
		c.fail("path", "missing; want the plugin binary or script")
	case strings.HasPrefix(path, "~"), strings.HasPrefix(path, "$"):
		// A shell would expand them; read as they are, they name a file
		// under the config's directory that does not exist.
		c.fail("path", "%q: ~ and $VARIABLES are not expanded; write the path out", path)
	case strings.ContainsRune(path, '/') && !filepath.IsAbs(path):
		// Join drops a leading "./": a path must not come out a bare
		// name, which exec would look up in PATH.
		if path = filepath.Join(dir, path); !strings.ContainsRune(path, filepath.Separator) {
			path = "." + string(filepath.Separator) + path
		}
	}
	rt.Spec = engine.Spec{Name: rc.GetName(), Path: path, Args: slices.Clone(rc.GetArgs())}

	before := len(*c.errs)
	l := &subprocess.Config{}
	rt.Spec.Launch = l
	l.Name = rc.GetName()
	for j, v := range rc.GetProtocolVersions() {
		if v == 0 {
			c.fail("protocol_versions["+strconv.Itoa(j)+"]", "0 is not a protocol version")
		}
	}
	if vs := rc.GetProtocolVersions(); len(vs) > 0 {
		l.AcceptedVersions = slices.Clone(vs)
	}
	l.HandshakeTimeout = c.duration("handshake_timeout", rc.GetHandshakeTimeout())
	l.GracefulTimeout = c.duration("graceful_timeout", rc.GetGracefulTimeout())
	l.VMShutdown = rc.VmShutdown == nil || rc.GetVmShutdown()
	if err := l.HandshakeAuth.UnmarshalText([]byte(rc.GetHandshakeAuth())); err != nil {
		c.failErr("handshake_auth", err)
	}
	if err := l.SHA256.UnmarshalText([]byte(rc.GetSha256())); err != nil {
		c.failErr("sha256", err)
	}
	if err := l.EnvPolicy.UnmarshalText([]byte(rc.GetEnvPolicy())); err != nil {
		c.failErr("env_policy", err)
	}
	if keep := rc.GetEnvKeep(); len(keep) > 0 {
		l.EnvKeep = slices.Clone(keep)
	}
	if vars := rc.GetEnvVars(); len(vars) > 0 {
		l.EnvVars = slices.Clone(vars)
	}
	for _, k := range slices.Sorted(maps.Keys(rc.GetEnv())) {
		if k == "" || strings.ContainsAny(k, "=\x00") {
			c.fail("env", "%q is not a variable name", k)
		}
		l.Env = append(l.Env, k+"="+rc.GetEnv()[k])
	}
	// The environment variable names on their own, so that the error names
	// the field; then the whole, for the rules between fields.
	if err := (&subprocess.Config{EnvVars: l.EnvVars}).Validate(); err != nil {
		c.failErr("env_vars", err)
	}
	if len(*c.errs) == before {
		if err := l.Validate(); err != nil {
			c.failErr("", err)
		}
	}

	rt.Spec.Restart = c.sub("restart").restart(rc.GetRestart())
	rt.Spec.Health = c.sub("health").health(rc.GetHealth())
	rt.Spec.Limits = c.sub("limits").limits(rc.GetLimits())
	if err := l.LogFormat.UnmarshalText([]byte(rc.GetLog().GetFormat())); err != nil {
		c.sub("log").failErr("format", err)
	}
	return rt
}

// duration parses a duration field; "" is zero (the default).
func (c checker) duration(field, s string) time.Duration {
	if s == "" {
		return 0
	}
	d, err := time.ParseDuration(s)
	switch {
	case err != nil:
		c.fail(field, "%q is not a duration; want a number and a unit, as in 500ms, 5s, 5m, 1h30m", s)
	case d <= 0:
		c.fail(field, "%q: want a positive duration (leave it out for the default)", s)
	}
	return d
}

func (c checker) restart(rc *vmrev1.RestartConfig) engine.RestartPolicy {
	// A file's runtimes are supervised: a crash is restarted unless the
	// file says never.
	p := engine.RestartPolicy{Mode: engine.RestartOnFailure}
	if s := rc.GetPolicy(); s != "" {
		if err := p.Mode.UnmarshalText([]byte(s)); err != nil {
			c.failErr("policy", err)
		}
	}
	p.InitialBackoff = c.duration("initial_backoff", rc.GetInitialBackoff())
	p.MaxBackoff = c.duration("max_backoff", rc.GetMaxBackoff())
	if p.MaxBackoff > 0 && p.MaxBackoff < p.InitialBackoff {
		c.fail("max_backoff", "%s is below initial_backoff %s", p.MaxBackoff, p.InitialBackoff)
	}
	p.MaxRestarts = int(rc.GetMaxRestarts())
	if rc.GetUnlimitedRestarts() {
		if p.MaxRestarts != 0 {
			c.fail("unlimited_restarts", "true with max_restarts %d; leave one of them out", p.MaxRestarts)
		}
		p.MaxRestarts = -1
	}
	p.Window = c.duration("window", rc.GetWindow())
	return p
}

func (c checker) health(hc *vmrev1.HealthConfig) engine.HealthCheck {
	h := engine.HealthCheck{
		Interval:         c.duration("interval", hc.GetInterval()),
		Timeout:          c.duration("timeout", hc.GetTimeout()),
		FailureThreshold: int(hc.GetFailureThreshold()),
	}
	if h.Interval == 0 && (h.Timeout != 0 || h.FailureThreshold != 0) {
		c.fail("interval", "missing; timeout and failure_threshold apply only with an interval")
	}
	if h.Interval > 0 && h.Timeout > h.Interval {
		c.fail("timeout", "%s is longer than interval %s", h.Timeout, h.Interval)
	}
	return h
}

func (c checker) limits(lc *vmrev1.LimitsConfig) engine.Limits {
	l := engine.Limits{OpenFiles: int(lc.GetOpenFiles()), Processes: int(lc.GetProcesses())}
	if s := lc.GetMemory(); s != "" {
		n, err := ParseSize(s)
		if err != nil {
			c.failErr("memory", err)
		}
		l.MemoryBytes = n
	}
	return l
}

// ParseSize parses a size: a whole number of bytes, optionally followed by
// a unit, KiB, MiB, GiB, TiB (powers of 1024) or KB, MB, GB, TB (powers of
// 1000), with no space ("2GiB", "512MiB", "1000000"). Errors wrap
// [vmre.ErrInvalidConfig].
func ParseSize(s string) (int64, error) {
	i := strings.IndexFunc(s, func(r rune) bool { return r < '0' || r > '9' })
	if i < 0 {
		i = len(s)
	}
	digits, unit := s[:i], s[i:]
	mult, ok := sizeUnits[unit]
	if !ok {
		return 0, fmt.Errorf("%w: size %q: unit %q is not one of B, KiB, MiB, GiB, TiB, KB, MB, GB, TB", vmre.ErrInvalidConfig, s, unit)
	}
	n, err := strconv.ParseInt(digits, 10, 64)
	if err != nil || n <= 0 {
		return 0, fmt.Errorf("%w: size %q: want a positive whole number and a unit, as in 512MiB or 2GiB", vmre.ErrInvalidConfig, s)
	}
	if n > (1<<63-1)/mult {
		return 0, fmt.Errorf("%w: size %q is too large", vmre.ErrInvalidConfig, s)
	}
	return n * mult, nil
}

var sizeUnits = map[string]int64{
	"": 1, "B": 1,
	"KiB": 1 << 10, "MiB": 1 << 20, "GiB": 1 << 30, "TiB": 1 << 40,
	"KB": 1e3, "MB": 1e6, "GB": 1e9, "TB": 1e12,
}
