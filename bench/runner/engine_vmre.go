package main

import (
	"context"
	"io"
	"time"

	"github.com/rs/zerolog"
	"github.com/vmre/vmre/logtime"
	"github.com/vmre/vmre/subprocess"
)

// avaProtocolVersion is avalanchego v1.15.0's RPCChainVMProtocol; vmre is
// told to accept it so that it runs the very binary avalanchego runs.
const avaProtocolVersion = 46

// vmreLogger returns the structured logger vmre's output bridge writes
// into: JSON lines with a timestamp, Info level, built as `vmre run` builds
// its own: the time comes from vmre's logtime.Hook (zerolog's field and
// format; plugin lines are stamped with the time they were read).
func vmreLogger(w io.Writer) zerolog.Logger {
	return zerolog.New(w).Level(zerolog.InfoLevel).Hook(&logtime.Hook{})
}

// vmreEngine launches plugins with vmre's subprocess.Bootstrap.
type vmreEngine struct {
	path string
	cfg  subprocess.Config
}

func newVmreEngine(path string, w io.Writer, handshakeTimeout, grace time.Duration) *vmreEngine {
	return &vmreEngine{path: path, cfg: subprocess.Config{
		Name:             "bench",
		Log:              vmreLogger(w),
		AcceptedVersions: []uint32{avaProtocolVersion},
		HandshakeTimeout: handshakeTimeout,
		GracefulTimeout:  grace,
	}}
}

func (e *vmreEngine) launch(ctx context.Context, args ...string) (*subprocess.Process, *subprocess.Status, error) {
	cfg := e.cfg
	cmd := subprocess.NewCmd(e.path, args...)
	p, err := subprocess.Bootstrap(ctx, cmd, &cfg)
	if err != nil {
		return nil, nil, err
	}
	st := p.Status()
	return p, &st, nil
}
