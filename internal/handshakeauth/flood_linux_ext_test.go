//go:build linux

package handshakeauth_test

import (
	"fmt"
	"strconv"
	"syscall"
	"testing"
	"time"

	"github.com/rs/zerolog"
	"github.com/vmre/vmre/internal/handshakeauth"
)

// TestPeerRefusalCostsLikeTokenRefusal: refusing a foreign caller without
// a token in token-or-peer mode (a peer check) must cost the engine about
// what refusing one with a wrong token in token mode (a compare) does: the
// same 500 calls, each the first on a connection of its own (later ones
// would be paced), the engine's CPU time per refusal compared in one test. A scan of every process per call made it dozens
// of times as much, growing with the flooder's own descriptors.
func TestPeerRefusalCostsLikeTokenRefusal(t *testing.T) {
	requirePeer(t)
	const conns, calls = 500, 1
	cpuPerRefusal := func(mode handshakeauth.Mode, tok string) time.Duration {
		p := newPolicy(t, mode, zerolog.Nop())
		addr, init := serve(t, p)
		plugin := startChild(t, "call", childEnv(addr, "grpc", "", true)...)
		p.SetPid(plugin.Cmd.Process.Pid)
		plugin.Next(t, "pid")
		before := cpuTime(t)
		flooder := startChild(t, "flood", childAddrKey+"="+addr, childTokenKey+"="+tok,
			floodConnsKey+"="+strconv.Itoa(conns), floodCallsKey+"="+strconv.Itoa(calls))
		var answers, refused int
		if _, err := fmt.Sscanf(flooder.Next(t, "answers"), "%d refused %d", &answers, &refused); err != nil {
			t.Fatal(err)
		}
		used := cpuTime(t) - before
		// A starved flooder (-race on a loaded machine) may see some of
		// its connections time out; most must be refused, none admitted.
		if refused < conns*calls/2 || init.calls.Load() != 0 {
			t.Fatalf("%d of %d calls refused, %d reached the Initializer; want most refused, none admitted", refused, answers, init.calls.Load())
		}
		return used / time.Duration(refused)
	}
	byToken := cpuPerRefusal(handshakeauth.ModeToken, "guessed-token-0123456789")
	byPeer := cpuPerRefusal(handshakeauth.ModeTokenOrPeer, "")
	t.Logf("engine CPU per refused call: %v with a wrong token, %v without one (peer check)", byToken, byPeer)
	if byPeer > 3*byToken {
		t.Errorf("a refusal by peer check costs %v, %.1f times one by token (%v); want at most 3 times", byPeer, float64(byPeer)/float64(byToken), byToken)
	}
}

// cpuTime is the CPU time this process has used, user and system.
func cpuTime(t *testing.T) time.Duration {
	t.Helper()
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		t.Fatal(err)
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
