package subprocess

import (
	"os/exec"

	"github.com/vmre/vmre"
)

// pluginEnv returns the plugin's environment: the policy applied to the
// environment cmd would run with as it is (cmd.Environ: cmd.Env, or the
// engine's own with PWD naming cmd.Dir), then the engine address under
// every name in cfg.EnvVars and the launch's secret. The policy drops the
// inherited handshake variables (a nested engine's own address and secret
// must not reach the plugin); exec keeps the last entry of a key, so a
// custom EnvVars name inherited from the base also ends up with this
// launch's value.
func pluginEnv(cmd *exec.Cmd, cfg *settings, addr, secret string) []string {
	kept := cfg.env.Environ(cmd.Environ())
	env := make([]string, 0, len(kept)+len(cfg.EnvVars)+1)
	env = append(env, kept...)
	for _, name := range cfg.EnvVars {
		env = append(env, name+"="+addr)
	}
	return append(env, vmre.HandshakeTokenKey+"="+secret)
}
