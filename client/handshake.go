package client

import (
	"context"
	"crypto/tls"
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
// of [vmre.HandshakeTokenKey] when that variable is set, [WithName] with
// that of [vmre.RuntimeNameKey], and [WithTLS] with
// [TLSFromEnv]'s configuration when any of its variables is set (options
// among opts take precedence over both), calls [Client.Initialize] once and
// closes the client's idle connections.
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
	envOpts, err := optionsFromEnv()
	if err != nil {
		return fmt.Errorf("%w: %w", vmre.ErrHandshakeFailed, err)
	}
	// Prepended, so that explicit options applied later win.
	opts = append(envOpts, opts...)
	if _, ok := ctx.Deadline(); !ok {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, vmre.DefaultHandshakeTimeout)
		defer cancel()
	}
	c := New(engineAddr, opts...)
	defer c.Close()
	return c.Initialize(ctx, protocolVersion, vmAddr)
}

// TLSFromEnv returns the TLS configuration the variables [vmre.EngineCAKey],
// [vmre.EngineCertKey] and [vmre.EngineKeyKey] describe (see
// [TLSFromFiles]), or nil if none of them is set: the engine is then
// reached in cleartext, unless its address is an https:// URL.
func TLSFromEnv() (*tls.Config, error) {
	ca, cert, key := os.Getenv(vmre.EngineCAKey), os.Getenv(vmre.EngineCertKey), os.Getenv(vmre.EngineKeyKey)
	if ca == "" && cert == "" && key == "" {
		return nil, nil
	}
	return TLSFromFiles(ca, cert, key)
}

// optionsFromEnv returns the options the environment asks for: the
// handshake token, the runtime's name and TLS.
func optionsFromEnv() ([]Option, error) {
	var opts []Option
	if token := os.Getenv(vmre.HandshakeTokenKey); token != "" {
		opts = append(opts, WithToken(token))
	}
	if name := os.Getenv(vmre.RuntimeNameKey); name != "" {
		opts = append(opts, WithName(name))
	}
	cfg, err := TLSFromEnv()
	if err != nil {
		return nil, err
	}
	if cfg != nil {
		opts = append(opts, WithTLS(cfg))
	}
	return opts, nil
}
