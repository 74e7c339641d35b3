//go:build linux

package subprocess

import (
	"context"
	"net"
	"net/http"
	"os"
	"os/exec"
	"testing"

	"github.com/rs/zerolog"
	"github.com/vmre/vmre"
	"github.com/vmre/vmre/internal/handshakeauth"
	"github.com/vmre/vmre/internal/token"
	"github.com/vmre/vmre/server"
)

// BenchmarkLaunchChecks measures what the handshake-auth, pre-flight and
// environment policies add to a launch, one by one, in the engine's
// process (the plugin's own start is BenchmarkLaunch's): the pre-flight of
// the test binary (open, stat, access, ELF header; no pin), the plugin's
// environment, the per-launch auth policy, Authorize for a call with the
// right token (vmre's plugins: no /proc lookup), and Authorize for a call
// without one, admitted by peer (every avalanchego-style plugin: the
// socket looked up in /proc, here held by this process).
func BenchmarkLaunchChecks(b *testing.B) {
	exe, err := os.Executable()
	if err != nil {
		b.Fatal(err)
	}
	cfg, err := (&Config{}).withDefaults(exe)
	if err != nil {
		b.Fatal(err)
	}
	b.Run("preflight", func(b *testing.B) {
		for b.Loop() {
			cmd := exec.Command(exe)
			e, err := checkPlugin(cmd, SHA256{})
			if err != nil {
				b.Fatal(err)
			}
			e.Close()
		}
	})
	b.Run("env", func(b *testing.B) {
		for b.Loop() {
			_ = pluginEnv(exec.Command("plugin"), &cfg, "127.0.0.1:12345", "token")
		}
	})
	b.Run("policy", func(b *testing.B) {
		for b.Loop() {
			p, err := newAuthPolicy(cfg.HandshakeAuth, token.New(), zerolog.Nop(), nil)
			if err != nil {
				b.Fatal(err)
			}
			p.SetPid(1)
		}
	})
	b.Run("authorize-token", func(b *testing.B) {
		secret := token.New()
		p, err := newAuthPolicy(handshakeauth.ModeTokenOrPeer, secret, zerolog.Nop(), nil)
		if err != nil {
			b.Fatal(err)
		}
		p.SetPid(1)
		call := server.Call{PeerAddr: "127.0.0.1:40000", Header: http.Header{vmre.HandshakeTokenHeader: {secret}}}
		ctx := context.Background()
		for b.Loop() {
			if err := p.Authorize(ctx, call); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("authorize-peer", func(b *testing.B) {
		p, err := newAuthPolicy(handshakeauth.ModeTokenOrPeer, token.New(), zerolog.Nop(), nil)
		if err != nil {
			b.Fatal(err)
		}
		p.SetPid(os.Getpid())
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			b.Fatal(err)
		}
		defer ln.Close()
		c, err := net.Dial("tcp", ln.Addr().String())
		if err != nil {
			b.Fatal(err)
		}
		defer c.Close()
		s, err := ln.Accept()
		if err != nil {
			b.Fatal(err)
		}
		defer s.Close()
		call := server.Call{PeerAddr: s.RemoteAddr().String(), Header: http.Header{}}
		// What net/http puts in every request's context.
		ctx := context.WithValue(context.Background(), http.LocalAddrContextKey, s.LocalAddr())
		for b.Loop() {
			if err := p.Authorize(ctx, call); err != nil {
				b.Fatal(err)
			}
		}
	})
}
