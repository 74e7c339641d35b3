// Package envpolicy decides which environment a plugin starts with.
//
// In the default inherit mode the plugin gets the engine's environment; in
// clean mode it gets only the variables named in an allowlist (by default
// [DefaultKeep]: PATH, HOME, locale and temp-directory variables). In both
// modes explicit KEY=VALUE entries are added last and win. The handshake
// variables — the engine-address keys and [vmre.HandshakeTokenKey] — are
// always removed from the inherited environment (a nested engine must not
// leak its own secret to a plugin) and may not be set explicitly: the
// launcher sets them itself, after the policy has run.
//
// The flags map one to one: --env-policy inherit|clean ([Mode], through its
// UnmarshalText), --env-keep PATH,HOME,... (Config.Keep) and repeatable
// --env KEY=VALUE (Config.Set).
package envpolicy

import (
	"fmt"
	"runtime"
	"slices"
	"strings"
	"unicode"

	"github.com/vmre/vmre"
)

// Mode selects how much of the engine's environment a plugin inherits. The
// zero value is [ModeInherit].
type Mode int

const (
	// ModeInherit passes the engine's whole environment on.
	ModeInherit Mode = iota
	// ModeClean passes only the allowlisted variables on.
	ModeClean
)

// String returns the flag spelling: "inherit" or "clean".
func (m Mode) String() string {
	switch m {
	case ModeInherit:
		return "inherit"
	case ModeClean:
		return "clean"
	default:
		return fmt.Sprintf("Mode(%d)", int(m))
	}
}

// ParseMode parses an --env-policy value; "" means inherit. Errors wrap
// [vmre.ErrInvalidConfig].
func ParseMode(s string) (Mode, error) {
	switch s {
	case "", "inherit":
		return ModeInherit, nil
	case "clean":
		return ModeClean, nil
	default:
		return 0, fmt.Errorf("%w: env policy %q, want inherit or clean", vmre.ErrInvalidConfig, s)
	}
}

// MarshalText implements [encoding.TextMarshaler], for [flag.TextVar].
func (m Mode) MarshalText() ([]byte, error) { return []byte(m.String()), nil }

// UnmarshalText implements [encoding.TextUnmarshaler] with [ParseMode].
func (m *Mode) UnmarshalText(b []byte) error {
	parsed, err := ParseMode(string(b))
	if err != nil {
		return err
	}
	*m = parsed
	return nil
}

// DefaultKeep returns the allowlist clean mode uses when none is given: what
// a program needs to find commands, a home and temp directory, its locale
// and time zone (and, on Windows, the system directories without which even
// networking fails). A trailing "*" matches a prefix. It returns a new
// slice on every call.
func DefaultKeep() []string {
	if runtime.GOOS == "windows" {
		return []string{"PATH", "PATHEXT", "SYSTEMROOT", "SYSTEMDRIVE", "WINDIR", "COMSPEC", "TEMP", "TMP",
			"USERPROFILE", "USERNAME", "HOMEDRIVE", "HOMEPATH", "APPDATA", "LOCALAPPDATA", "PROGRAMDATA"}
	}
	return []string{"PATH", "HOME", "USER", "LOGNAME", "TMPDIR", "TZ", "LANG", "LC_*"}
}

// Config configures [New]. The zero value inherits everything.
type Config struct {
	// Mode is inherit (default) or clean.
	Mode Mode
	// Keep names the variables clean mode passes on; a trailing "*"
	// matches a prefix ("LC_*"). Nil means [DefaultKeep]; an empty,
	// non-nil slice keeps nothing. Setting it in inherit mode is an error.
	Keep []string
	// Set holds KEY=VALUE entries added in either mode, overriding
	// inherited values; a later entry for the same key wins.
	Set []string
}

// Policy computes a plugin's environment. It is immutable and safe for
// concurrent use.
type Policy struct {
	mode Mode
	keep []string
	set  []string
}

// New validates cfg and returns a Policy. Names must be non-empty and
// contain neither '=' nor NUL; Set entries must be KEY=VALUE with a valid
// KEY and no NUL; the handshake variables are reserved. Errors wrap
// [vmre.ErrInvalidConfig]. cfg is not retained.
func New(cfg Config) (*Policy, error) {
	p := &Policy{mode: cfg.Mode}
	switch cfg.Mode {
	case ModeInherit:
		if len(cfg.Keep) > 0 {
			return nil, fmt.Errorf("%w: an env keep list (%s) needs the clean env policy", vmre.ErrInvalidConfig, strings.Join(cfg.Keep, ","))
		}
	case ModeClean:
		p.keep = slices.Clone(cfg.Keep)
		if cfg.Keep == nil {
			p.keep = DefaultKeep()
		}
		for _, k := range p.keep {
			if err := validName(strings.TrimSuffix(k, "*")); err != nil {
				return nil, fmt.Errorf("%w: env keep %q: %w", vmre.ErrInvalidConfig, k, err)
			}
		}
	default:
		return nil, fmt.Errorf("%w: unknown env policy %d", vmre.ErrInvalidConfig, int(cfg.Mode))
	}
	for _, kv := range cfg.Set {
		key, value, ok := strings.Cut(kv, "=")
		if !ok {
			return nil, fmt.Errorf("%w: env %q is not KEY=VALUE", vmre.ErrInvalidConfig, kv)
		}
		if err := validName(key); err != nil {
			return nil, fmt.Errorf("%w: env %q: %w", vmre.ErrInvalidConfig, kv, err)
		}
		if strings.ContainsRune(value, 0) {
			return nil, fmt.Errorf("%w: env %s: value contains NUL", vmre.ErrInvalidConfig, key)
		}
		if reserved(key) {
			return nil, fmt.Errorf("%w: env %s is set by the engine itself", vmre.ErrInvalidConfig, key)
		}
	}
	p.set = slices.Clone(cfg.Set)
	return p, nil
}

// Equal reports whether p and q compute the same environment from every
// base: the same mode, allowlist and explicit entries, in the same order.
// A nil Policy equals only nil.
func (p *Policy) Equal(q *Policy) bool {
	if p == nil || q == nil {
		return p == q
	}
	return p.mode == q.mode && slices.Equal(p.keep, q.keep) && slices.Equal(p.set, q.set)
}

func validName(name string) error {
	switch {
	case name == "":
		return fmt.Errorf("empty name")
	case strings.ContainsAny(name, "=\x00"):
		return fmt.Errorf("name contains '=' or NUL")
	}
	return nil
}

// Environ returns the plugin's environment built from base (normally
// [os.Environ]), as KEY=VALUE entries with each key once: the inherited or
// kept entries in base's order (a key repeated in base at its last place and
// value), minus the handshake variables, then the Set entries. The caller
// appends the handshake variables. base is not modified.
func (p *Policy) Environ(base []string) []string {
	overridden := func(key string) bool {
		return slices.ContainsFunc(p.set, func(kv string) bool { return keyEqual(envKey(kv), key) })
	}
	// A key repeated in base counts once, with its last value, the one
	// exec would pass on.
	last := make(map[string]int, len(base))
	for i, kv := range base {
		last[foldKey(envKey(kv))] = i
	}
	out := make([]string, 0, len(base)+len(p.set))
	for i, kv := range base {
		key := envKey(kv)
		if key == "" || reserved(key) || overridden(key) || last[foldKey(key)] != i {
			continue
		}
		if p.mode == ModeClean && !p.kept(key) {
			continue
		}
		out = append(out, kv)
	}
	// Later Set entries win over earlier ones for the same key.
	for i, kv := range p.set {
		key := envKey(kv)
		if slices.ContainsFunc(p.set[i+1:], func(later string) bool { return keyEqual(envKey(later), key) }) {
			continue
		}
		out = append(out, kv)
	}
	return out
}

func (p *Policy) kept(key string) bool {
	for _, k := range p.keep {
		if prefix, ok := strings.CutSuffix(k, "*"); ok {
			if len(key) >= len(prefix) && keyEqual(key[:len(prefix)], prefix) {
				return true
			}
		} else if keyEqual(key, k) {
			return true
		}
	}
	return false
}

// envKey returns the key of a KEY=VALUE entry. On Windows a key may begin
// with '=' (the per-drive "=C:" variables), so the search starts at 1, as
// os/exec does.
func envKey(kv string) string {
	if i := strings.IndexByte(kv[min(1, len(kv)):], '='); i >= 0 {
		return kv[:i+min(1, len(kv))]
	}
	return ""
}

// keyEqual compares variable names as the OS does: case-insensitively on
// Windows.
func keyEqual(a, b string) bool {
	if runtime.GOOS == "windows" {
		return strings.EqualFold(a, b)
	}
	return a == b
}

// foldKey returns the same string for names that keyEqual holds equal: on
// Windows each rune becomes the least rune of its case-folding orbit, the
// equivalence strings.EqualFold uses.
func foldKey(key string) string {
	if runtime.GOOS != "windows" {
		return key
	}
	return strings.Map(func(r rune) rune {
		least := r
		for f := unicode.SimpleFold(r); f != r; f = unicode.SimpleFold(f) {
			least = min(least, f)
		}
		return least
	}, key)
}

func reserved(key string) bool {
	if keyEqual(key, vmre.HandshakeTokenKey) {
		return true
	}
	return slices.ContainsFunc(vmre.EngineAddressKeys(), func(k string) bool { return keyEqual(key, k) })
}
