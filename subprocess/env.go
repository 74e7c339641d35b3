package subprocess

import (
	"os"
	"os/exec"
	"slices"
	"sync"

	"github.com/vmre/vmre"
	"github.com/vmre/vmre/internal/envpolicy"
)

// pluginEnv returns the plugin's environment, each key once, ready for
// exec as it is: the policy applied to the environment cmd would run with
// (cmd.Environ: cmd.Env, or the engine's own with PWD naming cmd.Dir),
// without the names in cfg.EnvVars, then the engine address under each
// of those names and the launch's secret. The policy drops the inherited
// handshake variables (a nested engine's own address and secret must not
// reach the plugin), and a custom EnvVars name inherited from the base is
// dropped here, so that no entry of the result repeats a key.
//
// For a cmd that inherits the engine's environment as it is (cmd.Env nil,
// cmd.Dir empty: what NewCmd makes) the part before the handshake
// variables is built once and reused while the engine's environment and
// the settings stay the same (see inheritedEnv).
func pluginEnv(cmd *exec.Cmd, cfg *settings, addr, secret string) []string {
	var kept []string
	if cmd.Env == nil && cmd.Dir == "" {
		kept = inheritedEnv(cfg)
	} else {
		kept = keptEnv(cmd.Environ(), cfg)
	}
	env := make([]string, 0, len(kept)+len(cfg.EnvVars)+1)
	env = append(env, kept...)
	for _, name := range cfg.EnvVars {
		env = append(env, name+"="+addr)
	}
	return append(env, vmre.HandshakeTokenKey+"="+secret)
}

// keptEnv applies cfg's policy to base and drops cfg.EnvVars's names.
// cfg.EnvVars may repeat a name, which is then set more than once with
// the same value.
func keptEnv(base []string, cfg *settings) []string {
	kept := cfg.env.Environ(base)
	return slices.DeleteFunc(kept, func(kv string) bool {
		return slices.ContainsFunc(cfg.EnvVars, func(name string) bool {
			return len(kv) > len(name) && kv[len(name)] == '=' && kv[:len(name)] == name
		})
	})
}

// inheritedEnvs holds keptEnv of the engine's environment for the last few
// settings launches used. Each launch takes a copy of the environment
// (os.Environ), compares it with the one the entries were made from (the
// strings are the same ones while nobody sets a variable, so this costs a
// pointer comparison per entry) and, while it is the same, looks its
// policy and EnvVars up instead of filtering and deduplicating the
// engine's variables again.
var inheritedEnvs struct {
	mu      sync.Mutex
	environ []string
	entries []inheritedEntry // most recently used last
}

type inheritedEntry struct {
	policy *envpolicy.Policy
	vars   []string
	kept   []string // shared by every launch that gets it: never modified
}

// maxInheritedEntries bounds inheritedEnvs: an engine runs a few distinct
// environment settings (one per configured runtime at most), and a miss
// costs only what every launch cost without the cache.
const maxInheritedEntries = 8

// inheritedEnv returns keptEnv(os.Environ(), cfg), from inheritedEnvs when
// it can. The result is shared: callers copy it, never modify it.
func inheritedEnv(cfg *settings) []string {
	environ := os.Environ()
	c := &inheritedEnvs
	c.mu.Lock()
	defer c.mu.Unlock()
	if !slices.Equal(environ, c.environ) {
		c.environ, c.entries = environ, c.entries[:0]
	}
	for i, e := range c.entries {
		if e.policy.Equal(cfg.env) && slices.Equal(e.vars, cfg.EnvVars) {
			if i != len(c.entries)-1 {
				c.entries = append(slices.Delete(c.entries, i, i+1), e)
			}
			return e.kept
		}
	}
	kept := slices.Clip(keptEnv(environ, cfg))
	if len(c.entries) == maxInheritedEntries {
		c.entries = slices.Delete(c.entries, 0, 1)
	}
	c.entries = append(c.entries, inheritedEntry{policy: cfg.env, vars: slices.Clone(cfg.EnvVars), kept: kept})
	return kept
}
