package subprocess

import (
	"os"
	"path/filepath"
	"runtime"

	"github.com/vmre/vmre"
	"github.com/vmre/vmre/internal/envpolicy"
)

// newEnvPolicy validates Config.EnvPolicy, EnvKeep and Env. Errors wrap
// [vmre.ErrInvalidConfig].
func newEnvPolicy(c *Config) (*envpolicy.Policy, error) {
	mode, err := envpolicy.ParseMode(c.EnvPolicy)
	if err != nil {
		return nil, err
	}
	return envpolicy.New(envpolicy.Config{Mode: mode, Keep: c.EnvKeep, Set: c.Env})
}

// pluginEnv returns the plugin's environment: the policy applied to the
// base (cmd.Env, or the engine's own environment if that is nil, see
// baseEnv), then the engine address under every name in cfg.EnvVars and
// the launch's token. The policy drops the inherited handshake variables
// (a nested engine's own address and secret must not reach the plugin);
// exec keeps the last entry of a key, so a custom EnvVars name inherited
// from the base also ends up with this launch's value.
func pluginEnv(base []string, dir string, cfg *settings, addr, token string) []string {
	kept := cfg.env.Environ(baseEnv(base, dir))
	env := make([]string, 0, len(kept)+len(cfg.EnvVars)+1)
	env = append(env, kept...)
	for _, name := range cfg.EnvVars {
		env = append(env, name+"="+addr)
	}
	return append(env, vmre.HandshakeTokenKey+"="+token)
}

// baseEnv is the environment os/exec would give a command with env and
// dir: env itself if it is not nil, else the engine's own environment
// with, if dir is set, PWD naming dir as an absolute path (except on
// Windows), since shells and getcwd-avoiding programs trust PWD. os/exec
// adds that PWD only when Cmd.Env is nil, and Bootstrap always sets it.
func baseEnv(env []string, dir string) []string {
	if env != nil {
		return env
	}
	env = os.Environ()
	if dir != "" && runtime.GOOS != "windows" {
		if pwd, err := filepath.Abs(dir); err == nil {
			env = append(env, "PWD="+pwd)
		}
	}
	return env
}
