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
// [Spec.Launch], with cfg's Log, OnOutput, OnOutputBytes and CgroupRoot)
// with Name and Limits set from the [Spec] and OnOutputBytes feeding the
// engine (after cfg.OnOutput and cfg.OnOutputBytes, if set); cfg itself is
// never modified. newCmd, if
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

func (s *subprocessLauncher) Launch(ctx context.Context, spec Spec, output func(OutputLine)) (subprocess.Status, vmre.Runtime, error) {
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
		cfg.Log, cfg.OnOutput, cfg.CgroupRoot = s.cfg.Log, s.cfg.OnOutput, s.cfg.CgroupRoot
	}
	cfg.Name = spec.Name
	cfg.Limits = spec.Limits
	// OnOutputBytes, not OnOutput: the ring copies the text, so the bridge
	// need not make a string per line. cfg.OnOutput, if set, still runs
	// (the bridge calls it first).
	next := s.cfg.OnOutputBytes
	cfg.OnOutputBytes = func(l subprocess.LineBytes) {
		if next != nil {
			next(l)
		}
		output(OutputLine{Time: l.Time, Stream: l.Stream, Level: l.Level.String(), TextBytes: l.Text, Partial: l.Partial, Panic: l.Panic})
	}
	p, err := subprocess.Bootstrap(ctx, cmd, &cfg)
	if err != nil {
		return subprocess.Status{}, nil, err
	}
	return p.Status(), p, nil
}
