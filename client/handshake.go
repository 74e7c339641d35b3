package client

import (
	"context"
	"fmt"
	"os"
	"strings"

	"github.com/vmre/vmre"
)

// EngineAddrFromEnv returns the engine's handshake address as the engine
// handed it to this process: the value of the first variable of
// [vmre.EngineAddressKeys] (vmre's own, then avalanchego's, then luxd's) that
// is set to something other than blanks, with surrounding blanks removed.
// When none is, the error wraps [vmre.ErrEngineAddressNotSet] and names the
// variables consulted. It does not check the address's form.
func EngineAddrFromEnv() (string, error) {
	keys := vmre.EngineAddressKeys()
	for _, key := range keys {
		if addr := strings.TrimSpace(os.Getenv(key)); addr != "" {
			return addr, nil
		}
	}
	return "", fmt.Errorf("%w: none of %s is set", vmre.ErrEngineAddressNotSet, strings.Join(keys, ", "))
}

// Handshake is the plugin side of the handshake in one call: it reads the
// engine's address with [EngineAddrFromEnv], adds [WithToken] with the value
// of [vmre.HandshakeTokenKey] when that variable is set (a WithToken among
// opts takes precedence), calls [Client.Initialize] once and closes the
// client's idle connections.
//
// It blocks until the engine answers or ctx is done; when ctx has no
// deadline, the call is bounded by [vmre.DefaultHandshakeTimeout], as the
// engine gives up after that long anyway. Every error wraps
// [vmre.ErrHandshakeFailed]; a missing address also wraps
// [vmre.ErrEngineAddressNotSet].
func Handshake(ctx context.Context, protocolVersion uint32, vmAddr string, opts ...Option) error {
	engineAddr, err := EngineAddrFromEnv()
	if err != nil {
		return fmt.Errorf("%w: %w", vmre.ErrHandshakeFailed, err)
	}
	if token := os.Getenv(vmre.HandshakeTokenKey); token != "" {
		// Prepended, so that an explicit WithToken applied later wins.
		opts = append([]Option{WithToken(token)}, opts...)
	}
	if _, ok := ctx.Deadline(); !ok {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, vmre.DefaultHandshakeTimeout)
		defer cancel()
	}
	c := New(engineAddr, opts...)
	defer c.Close()
	return c.Initialize(ctx, protocolVersion, vmAddr)
}
