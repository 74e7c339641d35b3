package client

import (
	"context"
	crand "crypto/rand"
	"errors"
	"fmt"
	"math/rand/v2"
	"time"

	"github.com/vmre/vmre"
)

// Defaults of [Attacher].
const (
	DefaultRefresh    = 30 * time.Second
	DefaultMinBackoff = 100 * time.Millisecond
	DefaultMaxBackoff = 30 * time.Second
)

// Attacher keeps a VM that runs outside the engine (a sidecar, a VM on
// another host) attached to the engine's attach endpoint (`vmre run
// --attach`). The engine forgets attached VMs when it restarts and marks
// one lost when its probes fail; the VM side is the one that knows it is
// alive, so it is the one that retries: an Attacher handshakes until the
// engine accepts, then handshakes again every Refresh, so that an engine
// that restarted registers the VM again within Refresh. Failed handshakes
// are retried after an exponential backoff with full jitter (a random
// wait up to MinBackoff, doubling per failure up to MaxBackoff), so that
// many VMs do not hammer an engine that comes back.
//
// Every handshake of one [Attacher.Run] carries the same random instance
// ([vmre.AttachInstanceHeader]): the engine takes a refresh from the same
// process and address as no news, and a handshake from a new process under
// the same name ([WithName]) as a new incarnation of the same runtime (same
// id, new start time).
type Attacher struct {
	// ProtocolVersion and VMAddr are announced in every handshake.
	ProtocolVersion uint32
	VMAddr          string
	// EngineAddr is the attach endpoint; default: [EngineAddrFromEnv].
	EngineAddr string
	// Options configure the client, after those the environment implies
	// (token, TLS, name), as for [Handshake].
	Options []Option
	// Refresh is the interval between handshakes once attached; default
	// DefaultRefresh.
	Refresh time.Duration
	// MinBackoff and MaxBackoff bound the wait after a failed handshake;
	// defaults DefaultMinBackoff and DefaultMaxBackoff.
	MinBackoff, MaxBackoff time.Duration
	// OnHandshake, if set, is called after every handshake with its
	// outcome (nil: accepted), from Run's goroutine; it must not block.
	OnHandshake func(err error)
}

// Run keeps the VM attached until ctx is done, then returns ctx's error.
// It returns earlier only with an error no retry can fix: no engine
// address, a bad option or file ([vmre.ErrInvalidConfig]), a request the
// engine finds invalid ([vmre.ErrInvalidRequest]) or a protocol version it
// does not accept ([vmre.ErrProtocolVersionMismatch]). Refused tokens and
// unreachable engines are retried: the token may be rotated on the engine's
// side, the engine may be restarting. Each handshake is bounded by
// [vmre.DefaultHandshakeTimeout]. Run is not safe to call twice at once on
// one Attacher.
func (a *Attacher) Run(ctx context.Context) error {
	engineAddr := a.EngineAddr
	if engineAddr == "" {
		var err error
		if engineAddr, err = EngineAddrFromEnv(); err != nil {
			return fmt.Errorf("%w: %w", vmre.ErrHandshakeFailed, err)
		}
	}
	envOpts, err := optionsFromEnv()
	if err != nil {
		return fmt.Errorf("%w: %w", vmre.ErrHandshakeFailed, err)
	}
	opts := append(append(envOpts, a.Options...), withInstance(crand.Text()))
	c := New(engineAddr, opts...)
	defer c.Close()
	refresh := cmpOr(a.Refresh, DefaultRefresh)
	minBackoff := cmpOr(a.MinBackoff, DefaultMinBackoff)
	maxBackoff := max(cmpOr(a.MaxBackoff, DefaultMaxBackoff), minBackoff)
	failures := 0
	timer := time.NewTimer(0)
	defer timer.Stop()
	for {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-timer.C:
		}
		callCtx, cancel := context.WithTimeout(ctx, vmre.DefaultHandshakeTimeout)
		err := c.Initialize(callCtx, a.ProtocolVersion, a.VMAddr)
		cancel()
		if ctx.Err() != nil {
			return ctx.Err()
		}
		if a.OnHandshake != nil {
			a.OnHandshake(err)
		}
		if err == nil {
			failures = 0
			// Between refreshes the connection would only idle.
			c.Close()
			timer.Reset(refresh)
			continue
		}
		if permanent(err) {
			return err
		}
		timer.Reset(backoff(minBackoff, maxBackoff, failures))
		failures++
	}
}

// KeepAttached keeps the VM whose server listens at vmAddr attached to the
// engine named in the environment until ctx is done; it is [Attacher.Run]
// with the defaults. Give it [WithName] (or set [vmre.RuntimeNameKey]) so
// that the VM keeps its runtime across its own restarts.
func KeepAttached(ctx context.Context, protocolVersion uint32, vmAddr string, opts ...Option) error {
	a := &Attacher{ProtocolVersion: protocolVersion, VMAddr: vmAddr, Options: opts}
	return a.Run(ctx)
}

// permanent reports whether a handshake error would come back unchanged.
func permanent(err error) bool {
	return errors.Is(err, vmre.ErrInvalidConfig) || errors.Is(err, vmre.ErrInvalidRequest) ||
		errors.Is(err, vmre.ErrProtocolVersionMismatch)
}

// backoff is the wait after the (failures+1)th failure in a row: a random
// duration up to min(maxWait, minWait*2^failures) ("full jitter").
func backoff(minWait, maxWait time.Duration, failures int) time.Duration {
	ceiling := maxWait
	if failures < 62 && minWait<<failures > 0 && minWait<<failures < maxWait {
		ceiling = minWait << failures
	}
	return rand.N(ceiling) + 1
}

func cmpOr(d, def time.Duration) time.Duration {
	if d > 0 {
		return d
	}
	return def
}
