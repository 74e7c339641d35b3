package engine

import (
	"context"
	"fmt"
	"os/exec"

	"github.com/vmre/vmre"
	"github.com/vmre/vmre/subprocess"
)

// NewSubprocessLauncher returns the [Launcher] that starts plugins with
// subprocess.Bootstrap. Every launch uses a copy of cfg (or of
// [Spec.Launch], with cfg's Log, OnOutput, CgroupRoot, Refusals and VMTLS) with Name and
// Limits set from the [Spec] and OnOutput feeding the engine (after
// cfg.OnOutput, if set); cfg itself is never modified. newCmd, if
// not nil, builds the command of each launch (restarts included) instead
// of subprocess.NewCmd(spec.Path, spec.Args...), for callers that set an
// environment policy or check the binary first.
func NewSubprocessLauncher(cfg subprocess.Config, newCmd func(Spec) (*exec.Cmd, error)) Launcher {
	return &subprocessLauncher{cfg: cfg, newCmd: newCmd}
}

type subprocessLauncher struct {
	cfg    subprocess.Config
	newCmd func(Spec) (*exec.Cmd, error)
}

func (s *subprocessLauncher) Launch(ctx context.Context, spec Spec, output func(*subprocess.Line)) (subprocess.Status, vmre.Runtime, error) {
	var cmd *exec.Cmd
	if s.newCmd != nil {
		c, err := s.newCmd(spec)
		if err != nil {
			return subprocess.Status{}, nil, fmt.Errorf("build command: %w", err)
		}
		cmd = c
	} else {
		cmd = subprocess.NewCmd(spec.Path, spec.Args...)
	}
	cfg := s.cfg
	if spec.Launch != nil {
		cfg = *spec.Launch
		cfg.Log, cfg.OnOutput, cfg.CgroupRoot, cfg.Refusals, cfg.VMTLS = s.cfg.Log, s.cfg.OnOutput, s.cfg.CgroupRoot, s.cfg.Refusals, s.cfg.VMTLS
	}
	cfg.Name = spec.Name
	cfg.Limits = spec.Limits
	next := s.cfg.OnOutput
	cfg.OnOutput = func(l *subprocess.Line) {
		if next != nil {
			next(l)
		}
		output(l)
	}
	p, err := subprocess.Bootstrap(ctx, cmd, &cfg)
	if err != nil {
		return subprocess.Status{}, nil, err
	}
	return p.Status(), p, nil
}
