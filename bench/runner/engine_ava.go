package main

import (
	"context"
	"io"
	"slices"
	"time"

	"github.com/ava-labs/avalanchego/utils/logging"
	"github.com/ava-labs/avalanchego/vms/rpcchainvm/grpcutils"
	avaruntime "github.com/ava-labs/avalanchego/vms/rpcchainvm/runtime"
	avasub "github.com/ava-labs/avalanchego/vms/rpcchainvm/runtime/subprocess"
)

// avaLogger returns an avalanchego logger writing JSON to w at Info level,
// the shape of the per-VM logger avalanchego's rpcchainvm factory hands to
// subprocess.Bootstrap as Log, Stdout and Stderr.
func avaLogger(w io.WriteCloser) logging.Logger {
	return logging.NewLogger("", logging.NewWrappedCore(logging.Info, w, logging.JSON.FileEncoder()))
}

// avaEngine launches plugins with avalanchego v1.15.0's real
// vms/rpcchainvm/runtime/subprocess, the way its rpcchainvm factory does:
// a fresh listener from grpcutils.NewListener, subprocess.NewCmd, and the VM
// logger as Stdout, Stderr and Log.
type avaEngine struct {
	path             string
	log              logging.Logger
	handshakeTimeout time.Duration
	// env is given to the plugin besides what Bootstrap sets: avalanchego
	// passes its plugins no variable of its own environment but GRPC_* and
	// GODEBUG*, so that the plugin sees the same settings under both engines.
	env []string
}

func newAvaEngine(path string, w io.WriteCloser, handshakeTimeout time.Duration) *avaEngine {
	return &avaEngine{path: path, log: avaLogger(w), handshakeTimeout: handshakeTimeout}
}

func (e *avaEngine) launch(ctx context.Context, args ...string) (avaruntime.Stopper, *avasub.Status, error) {
	lis, err := grpcutils.NewListener()
	if err != nil {
		return nil, nil, err
	}
	cmd := avasub.NewCmd(e.path, args...)
	cmd.Env = slices.Clone(e.env) // Bootstrap appends the engine's address
	st, stopper, err := avasub.Bootstrap(ctx, lis, cmd, &avasub.Config{
		Stderr:           e.log,
		Stdout:           e.log,
		HandshakeTimeout: e.handshakeTimeout,
		Log:              e.log,
	})
	return stopper, st, err
}

// launchWith is launch with explicit writers (the output-bridge metric).
func (e *avaEngine) launchWith(ctx context.Context, stdout, stderr io.Writer, args ...string) (avaruntime.Stopper, error) {
	lis, err := grpcutils.NewListener()
	if err != nil {
		return nil, err
	}
	cmd := avasub.NewCmd(e.path, args...)
	_, stopper, err := avasub.Bootstrap(ctx, lis, cmd, &avasub.Config{
		Stderr:           stderr,
		Stdout:           stdout,
		HandshakeTimeout: e.handshakeTimeout,
		Log:              e.log,
	})
	return stopper, err
}
