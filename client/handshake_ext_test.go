package client_test

import (
	"context"
	"errors"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/vmre/vmre"
	"github.com/vmre/vmre/client"
)

// setEnv sets the engine-address variables for one test, unsetting those
// not in env. Tests that call it cannot run in parallel.
func setEnv(t *testing.T, env map[string]string) {
	t.Helper()
	for _, key := range append(vmre.EngineAddressKeys(), vmre.HandshakeTokenKey) {
		t.Setenv(key, "") // restores the old value when the test ends
		if v, ok := env[key]; ok {
			t.Setenv(key, v)
		} else if err := os.Unsetenv(key); err != nil {
			t.Fatalf("unset %s: %v", key, err)
		}
	}
}

// TestEngineAddrFromEnv proves the order in which a plugin looks for the
// engine's address: vmre's variable, then avalanchego's, then luxd's, with
// blank values skipped. It sets environment variables, so it is not
// parallel.
func TestEngineAddrFromEnv(t *testing.T) {
	const (
		vmreAddr = "127.0.0.1:1001"
		avaAddr  = "127.0.0.1:1002"
		luxAddr  = "127.0.0.1:1003"
	)
	tests := []struct {
		name    string
		env     map[string]string
		want    string
		wantErr error
	}{
		{name: "none set", env: nil, wantErr: vmre.ErrEngineAddressNotSet},
		{
			name:    "all empty",
			env:     map[string]string{vmre.EngineAddressKey: "", vmre.AvalancheEngineAddressKey: " ", vmre.LuxEngineAddressKey: "\t"},
			wantErr: vmre.ErrEngineAddressNotSet,
		},
		{name: "only lux", env: map[string]string{vmre.LuxEngineAddressKey: luxAddr}, want: luxAddr},
		{name: "only avalanche", env: map[string]string{vmre.AvalancheEngineAddressKey: avaAddr}, want: avaAddr},
		{name: "only vmre", env: map[string]string{vmre.EngineAddressKey: vmreAddr}, want: vmreAddr},
		{
			name: "avalanche before lux",
			env:  map[string]string{vmre.AvalancheEngineAddressKey: avaAddr, vmre.LuxEngineAddressKey: luxAddr},
			want: avaAddr,
		},
		{
			name: "vmre before both",
			env:  map[string]string{vmre.EngineAddressKey: vmreAddr, vmre.AvalancheEngineAddressKey: avaAddr, vmre.LuxEngineAddressKey: luxAddr},
			want: vmreAddr,
		},
		{
			name: "blank vmre is skipped",
			env:  map[string]string{vmre.EngineAddressKey: "  ", vmre.LuxEngineAddressKey: luxAddr},
			want: luxAddr,
		},
		{
			name: "surrounding blanks are trimmed",
			env:  map[string]string{vmre.AvalancheEngineAddressKey: " " + avaAddr + "\n"},
			want: avaAddr,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			setEnv(t, tt.env)
			got, err := client.EngineAddrFromEnv()
			if !errors.Is(err, tt.wantErr) {
				t.Fatalf("EngineAddrFromEnv() error = %v, want %v", err, tt.wantErr)
			}
			if got != tt.want {
				t.Errorf("EngineAddrFromEnv() = %q, want %q", got, tt.want)
			}
			if err != nil {
				for _, key := range vmre.EngineAddressKeys() {
					if !strings.Contains(err.Error(), key) {
						t.Errorf("error %q does not name %s", err, key)
					}
				}
			}
		})
	}
}

// TestHandshake proves the plugin-side helper end to end: it finds the
// engine through each variable, sends the token from the environment
// unless WithToken overrides it, and honours options.
func TestHandshake(t *testing.T) {
	engine := &versionEngine{}
	seen := &requestLog{}
	engineAddr := startVMREServer(t, engine, seen)

	tests := []struct {
		name      string
		env       map[string]string
		opts      []client.Option
		version   uint32
		wantErr   []error
		wantToken string
		wantProto string
	}{
		{
			name:      "vmre variable",
			env:       map[string]string{vmre.EngineAddressKey: engineAddr},
			version:   engineVersion,
			wantProto: "HTTP/2.0",
		},
		{
			name:      "avalanche variable, token from the environment",
			env:       map[string]string{vmre.AvalancheEngineAddressKey: engineAddr, vmre.HandshakeTokenKey: "env-token"},
			version:   engineVersion,
			wantToken: "env-token",
			wantProto: "HTTP/2.0",
		},
		{
			name:      "explicit token wins",
			env:       map[string]string{vmre.LuxEngineAddressKey: engineAddr, vmre.HandshakeTokenKey: "env-token"},
			opts:      []client.Option{client.WithToken("flag-token")},
			version:   engineVersion,
			wantToken: "flag-token",
			wantProto: "HTTP/2.0",
		},
		{
			name:      "protocol option",
			env:       map[string]string{vmre.EngineAddressKey: engineAddr},
			opts:      []client.Option{client.WithProtocol(client.ProtocolConnect)},
			version:   engineVersion,
			wantProto: "HTTP/1.1",
		},
		{
			name:      "version mismatch",
			env:       map[string]string{vmre.EngineAddressKey: engineAddr},
			version:   41,
			wantErr:   []error{vmre.ErrHandshakeFailed, vmre.ErrProtocolVersionMismatch},
			wantProto: "HTTP/2.0",
		},
		{
			name:    "no address",
			env:     nil,
			version: engineVersion,
			wantErr: []error{vmre.ErrHandshakeFailed, vmre.ErrEngineAddressNotSet},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			setEnv(t, tt.env)
			before := len(seen.all())
			err := client.Handshake(t.Context(), tt.version, "127.0.0.1:50001", tt.opts...)
			checkSentinels(t, err, tt.wantErr...)
			requests := seen.all()[before:]
			if tt.wantProto == "" {
				if len(requests) != 0 {
					t.Errorf("%d requests reached the engine, want none", len(requests))
				}
				return
			}
			if len(requests) != 1 {
				t.Fatalf("%d requests reached the engine, want 1", len(requests))
			}
			if got := requests[0]; got.Token != tt.wantToken || got.Proto != tt.wantProto {
				t.Errorf("request = %+v, want token %q over %s", got, tt.wantToken, tt.wantProto)
			}
		})
	}
}

// TestHandshakeDefaultTimeout proves that Handshake bounds a call whose
// context has no deadline, so a plugin never hangs on a silent engine.
func TestHandshakeDefaultTimeout(t *testing.T) {
	if testing.Short() {
		t.Skipf("waits the full %v", vmre.DefaultHandshakeTimeout)
	}
	// The engine accepts the connection and never answers.
	engineAddr := startVMREServer(t, initFunc(func(ctx context.Context, _ uint32, _ string) error {
		<-ctx.Done()
		return ctx.Err()
	}), nil)
	setEnv(t, map[string]string{vmre.EngineAddressKey: engineAddr})

	start := time.Now()
	err := client.Handshake(context.Background(), engineVersion, "127.0.0.1:50001")
	elapsed := time.Since(start)
	checkSentinels(t, err, vmre.ErrHandshakeFailed, vmre.ErrHandshakeTimeout)
	// The upper bound rules out no bound or a much longer one; how soon
	// after the timeout a loaded machine returns is not checked.
	if elapsed < vmre.DefaultHandshakeTimeout || elapsed > 2*vmre.DefaultHandshakeTimeout {
		t.Errorf("Handshake returned after %v, want about %v", elapsed, vmre.DefaultHandshakeTimeout)
	}
}

// initFunc adapts a function to vmre.Initializer.
type initFunc func(ctx context.Context, protocolVersion uint32, vmAddr string) error

func (f initFunc) Initialize(ctx context.Context, protocolVersion uint32, vmAddr string) error {
	return f(ctx, protocolVersion, vmAddr)
}
