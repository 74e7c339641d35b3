package handshakeauth_test

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"connectrpc.com/connect"
	"github.com/rs/zerolog"
	"github.com/vmre/vmre"
	handshakev1 "github.com/vmre/vmre/gen/vmre/handshake/v1"
	"github.com/vmre/vmre/internal/handshakeauth"
	"github.com/vmre/vmre/internal/handshaketest"
	"github.com/vmre/vmre/internal/peercred"
	"github.com/vmre/vmre/server"
	"google.golang.org/protobuf/types/known/emptypb"
)

const testToken = "test-token-0123456789abcdef"

// Child process settings: the test binary re-executes itself as a plugin
// (or as a foreign process) that calls Initialize.
const (
	childModeKey  = "HANDSHAKEAUTH_TEST_CHILD" // "call", "fork-call", "flood"
	childAddrKey  = "HANDSHAKEAUTH_TEST_ADDR"
	childTokenKey = "HANDSHAKEAUTH_TEST_TOKEN"
	childProtoKey = "HANDSHAKEAUTH_TEST_PROTO" // "grpc" or "json"
	childWaitKey  = "HANDSHAKEAUTH_TEST_WAIT"  // "1": call after a line on stdin
)

func TestMain(m *testing.M) {
	switch os.Getenv(childModeKey) {
	case "":
		os.Exit(m.Run())
	case "call":
		fmt.Printf("pid %d\n", os.Getpid())
		if os.Getenv(childWaitKey) == "1" {
			_, _ = bufio.NewReader(os.Stdin).ReadString('\n')
		}
		// No deadline: the parent's Next bounds the wait, and the child is
		// killed when its test ends; a call slowed by a loaded machine
		// must not turn into deadline_exceeded.
		fmt.Printf("result %s\n", call(context.Background(), os.Getenv(childProtoKey), os.Getenv(childAddrKey), os.Getenv(childTokenKey)))
		os.Exit(0)
	case "fork-call":
		// The grandchild makes the call; it shares this process's stdio.
		cmd := exec.Command(os.Args[0])
		cmd.Env = append(os.Environ(), childModeKey+"=call")
		cmd.Stdin, cmd.Stdout, cmd.Stderr = os.Stdin, os.Stdout, os.Stderr
		if err := cmd.Run(); err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(2)
		}
		os.Exit(0)
	case "flood":
		os.Exit(floodChild())
	default:
		os.Exit(3)
	}
}

// call makes one Initialize call and returns "ok" or the status code's name.
func call(ctx context.Context, proto, addr, token string) string {
	if proto == "json" {
		return callJSON(ctx, addr, token)
	}
	var protocols http.Protocols
	protocols.SetUnencryptedHTTP2(true)
	hc := &http.Client{Transport: &http.Transport{Protocols: &protocols}}
	defer hc.CloseIdleConnections()
	c := connect.NewClient[handshakev1.InitializeRequest, emptypb.Empty](hc,
		"http://"+addr+server.InitializeProcedure, connect.WithGRPC())
	req := connect.NewRequest(&handshakev1.InitializeRequest{ProtocolVersion: vmre.ProtocolVersion, Addr: "127.0.0.1:1"})
	if token != "" {
		req.Header().Set(vmre.HandshakeTokenHeader, token)
	}
	if _, err := c.CallUnary(ctx, req); err != nil {
		if ctx.Err() == nil && (errors.Is(err, syscall.ECONNRESET) || errors.Is(err, io.ErrUnexpectedEOF)) {
			// The server closed the connection under the call; connect
			// reports a reset as canceled, whatever the policy would say.
			return "dropped"
		}
		return connect.CodeOf(err).String()
	}
	return "ok"
}

// floodCall is call for one of many concurrent calls. At load 30 net/http
// dropped connections whose client SETTINGS it had not read within its
// preface timeout ("timeout waiting for SETTINGS frames"): such a call
// never reached the policy, so it is made again, up to 5 times. It
// returns the last answer and how many times the call was made again.
func floodCall(ctx context.Context, proto, addr, token string) (got string, again int) {
	got = call(ctx, proto, addr, token)
	for ; (got == "dropped" || got == "unavailable") && again < 5; again++ {
		got = call(ctx, proto, addr, token)
	}
	return got, again
}

// callJSON calls as curl does: Connect protocol, JSON, HTTP/1.1.
func callJSON(ctx context.Context, addr, token string) string {
	body := fmt.Sprintf(`{"protocolVersion":%d,"addr":"127.0.0.1:1"}`, vmre.ProtocolVersion)
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, "http://"+addr+server.InitializeProcedure, strings.NewReader(body))
	if err != nil {
		return err.Error()
	}
	req.Header.Set("Content-Type", "application/json")
	if token != "" {
		req.Header.Set(vmre.HandshakeTokenHeader, token)
	}
	hc := &http.Client{Transport: &http.Transport{}}
	defer hc.CloseIdleConnections()
	resp, err := hc.Do(req)
	if err != nil {
		return err.Error()
	}
	defer resp.Body.Close()
	if resp.StatusCode == http.StatusOK {
		return "ok"
	}
	var e struct{ Code string }
	_ = json.NewDecoder(resp.Body).Decode(&e)
	return e.Code
}

type countingInitializer struct{ calls atomic.Int64 }

func (c *countingInitializer) Initialize(context.Context, uint32, string) error {
	c.calls.Add(1)
	return nil
}

// serve runs the handshake handler behind policy on 127.0.0.1:0, on the
// policy's Listener, as a launch does.
func serve(t *testing.T, policy *handshakeauth.Policy) (string, *countingInitializer) {
	t.Helper()
	init := &countingInitializer{}
	path, h := server.NewHandler(init, server.WithAuthorizer(policy.Authorize))
	mux := http.NewServeMux()
	mux.Handle(path, h)
	srv := server.NewHTTPServer(mux)
	srv.ConnContext = handshakeauth.ConnContext
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go func() { _ = srv.Serve(policy.Listener(ln)) }()
	t.Cleanup(func() { _ = srv.Close() })
	return ln.Addr().String(), init
}

func newPolicy(t *testing.T, mode handshakeauth.Mode, log zerolog.Logger) *handshakeauth.Policy {
	t.Helper()
	p, err := handshakeauth.New(handshakeauth.Config{Mode: mode, Token: testToken, Log: log})
	if err != nil {
		t.Fatal(err)
	}
	return p
}

// startChild re-executes the test binary in mode; it is killed when the
// test ends.
func startChild(t *testing.T, mode string, env ...string) *handshaketest.Child {
	t.Helper()
	return handshaketest.StartChild(t, 0, append([]string{childModeKey + "=" + mode}, env...)...)
}

func childEnv(addr, proto, token string, wait bool) []string {
	env := []string{childAddrKey + "=" + addr, childProtoKey + "=" + proto, childTokenKey + "=" + token}
	if wait {
		env = append(env, childWaitKey+"=1")
	}
	return env
}

func TestParseMode(t *testing.T) {
	t.Parallel()
	tests := []struct {
		in      string
		want    handshakeauth.Mode
		wantErr error
	}{
		{"", handshakeauth.DefaultMode(), nil},
		{"token", handshakeauth.ModeToken, nil},
		{"none", handshakeauth.ModeNone, nil},
		{"peer", handshakeauth.ModePeer, nil},
		{"token-or-peer", handshakeauth.ModeTokenOrPeer, nil},
		{"TOKEN", 0, vmre.ErrInvalidConfig},
		{"token,peer", 0, vmre.ErrInvalidConfig},
		{"off", 0, vmre.ErrInvalidConfig},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			t.Parallel()
			wantErr := tt.wantErr
			if (tt.want == handshakeauth.ModePeer || tt.want == handshakeauth.ModeTokenOrPeer) && !peercred.Supported {
				wantErr = vmre.ErrInvalidConfig
			}
			got, err := handshakeauth.ParseMode(tt.in)
			if !errors.Is(err, wantErr) {
				t.Fatalf("ParseMode(%q) error = %v, want %v", tt.in, err, wantErr)
			}
			if err == nil && got != tt.want {
				t.Fatalf("ParseMode(%q) = %v, want %v", tt.in, got, tt.want)
			}
			if err == nil && tt.in != "" && got.String() != tt.in {
				t.Fatalf("String() = %q, want %q", got.String(), tt.in)
			}
		})
	}
	if peercred.Supported && handshakeauth.DefaultMode() != handshakeauth.ModeTokenOrPeer {
		t.Errorf("default mode %v on an OS with peer checks", handshakeauth.DefaultMode())
	}
}

func TestModeTextRoundTrip(t *testing.T) {
	t.Parallel()
	var m handshakeauth.Mode
	if err := m.UnmarshalText([]byte("token")); err != nil || m != handshakeauth.ModeToken {
		t.Fatalf("UnmarshalText(token) = %v, %v", m, err)
	}
	if b, _ := m.MarshalText(); string(b) != "token" {
		t.Fatalf("MarshalText = %q", b)
	}
	if err := m.UnmarshalText([]byte("bogus")); !errors.Is(err, vmre.ErrInvalidConfig) {
		t.Fatalf("UnmarshalText(bogus) = %v", err)
	}
}

func TestNewInvalid(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		cfg  handshakeauth.Config
	}{
		{"token mode without token", handshakeauth.Config{Mode: handshakeauth.ModeToken}},
		{"short token", handshakeauth.Config{Mode: handshakeauth.ModeToken, Token: "short"}},
		{"default mode without token", handshakeauth.Config{}},
		{"unknown mode", handshakeauth.Config{Mode: 99, Token: testToken}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			if _, err := handshakeauth.New(tt.cfg); !errors.Is(err, vmre.ErrInvalidConfig) {
				t.Fatalf("New error = %v, want ErrInvalidConfig", err)
			}
		})
	}
	if _, err := handshakeauth.New(handshakeauth.Config{Mode: handshakeauth.ModeNone}); err != nil {
		t.Fatalf("mode none needs no token: %v", err)
	}
}

// TestTokenMode checks tokens over a real server: missing, wrong, doubled
// and right, with both the gRPC and the curl-style JSON protocol.
func TestTokenMode(t *testing.T) {
	t.Parallel()
	addr, init := serve(t, newPolicy(t, handshakeauth.ModeToken, zerolog.Nop()))
	for _, proto := range []string{"grpc", "json"} {
		for _, tc := range []struct{ token, want string }{
			{"", "unauthenticated"},
			{"wrong-token-0123456789", "unauthenticated"},
			{testToken + "x", "unauthenticated"},
			{testToken[:len(testToken)-1], "unauthenticated"},
			{testToken, "ok"},
		} {
			if got := call(t.Context(), proto, addr, tc.token); got != tc.want {
				t.Errorf("%s with token %q: %s, want %s", proto, tc.token, got, tc.want)
			}
		}
	}
	if n := init.calls.Load(); n != 2 {
		t.Errorf("Initializer called %d times, want 2", n)
	}
}

func TestTwoTokensRefused(t *testing.T) {
	t.Parallel()
	p := newPolicy(t, handshakeauth.ModeToken, zerolog.Nop())
	h := http.Header{}
	h.Add(vmre.HandshakeTokenHeader, testToken)
	h.Add(vmre.HandshakeTokenHeader, testToken)
	if err := p.Authorize(t.Context(), server.Call{PeerAddr: "127.0.0.1:1", Header: h}); !errors.Is(err, vmre.ErrUnauthenticated) {
		t.Fatalf("two tokens: %v, want ErrUnauthenticated", err)
	}
}

func TestModeNone(t *testing.T) {
	t.Parallel()
	addr, _ := serve(t, newPolicy(t, handshakeauth.ModeNone, zerolog.Nop()))
	for _, proto := range []string{"grpc", "json"} {
		if got := call(t.Context(), proto, addr, ""); got != "ok" {
			t.Errorf("%s: %s, want ok", proto, got)
		}
	}
}

func requirePeer(t *testing.T) {
	t.Helper()
	if !peercred.Supported {
		t.Skip("peer checks need Linux")
	}
}

// TestPeerAdmitsLaunchedPlugin: a plugin without a token (as a grpc-go
// plugin built for avalanchego is) handshakes in the peer modes, over gRPC
// and JSON, as the launched process and as its grandchild.
func TestPeerAdmitsLaunchedPlugin(t *testing.T) {
	t.Parallel()
	requirePeer(t)
	for _, mode := range []handshakeauth.Mode{handshakeauth.ModePeer, handshakeauth.ModeTokenOrPeer} {
		for _, proto := range []string{"grpc", "json"} {
			for _, childMode := range []string{"call", "fork-call"} {
				t.Run(fmt.Sprintf("%s/%s/%s", mode, proto, childMode), func(t *testing.T) {
					t.Parallel()
					p := newPolicy(t, mode, zerolog.New(zerolog.NewTestWriter(t)))
					addr, init := serve(t, p)
					c := startChild(t, childMode, childEnv(addr, proto, "", false)...)
					// The call may arrive before SetPid: it waits.
					p.SetPid(c.Cmd.Process.Pid)
					if got := c.Next(t, "result"); got != "ok" {
						t.Fatalf("launched plugin: %s, want ok", got)
					}
					if init.calls.Load() != 1 {
						t.Fatalf("Initializer called %d times, want 1", init.calls.Load())
					}
				})
			}
		}
	}
}

// TestForeignRacesHandshake: foreign processes (gRPC and curl-style JSON,
// without a token or with a guessed one) call before the launched plugin
// and are refused; the plugin's own handshake then succeeds.
func TestForeignRacesHandshake(t *testing.T) {
	t.Parallel()
	requirePeer(t)
	for _, mode := range []handshakeauth.Mode{handshakeauth.ModePeer, handshakeauth.ModeTokenOrPeer} {
		for _, proto := range []string{"grpc", "json"} {
			t.Run(mode.String()+"/"+proto, func(t *testing.T) {
				t.Parallel()
				p := newPolicy(t, mode, zerolog.New(zerolog.NewTestWriter(t)))
				addr, init := serve(t, p)
				plugin := startChild(t, "call", childEnv(addr, proto, "", true)...)
				p.SetPid(plugin.Cmd.Process.Pid)

				foreign := startChild(t, "call", childEnv(addr, proto, "", false)...)
				if got := foreign.Next(t, "result"); got != "permission_denied" {
					t.Errorf("foreign process without token: %s, want permission_denied", got)
				}
				wantGuess := "permission_denied"
				if mode == handshakeauth.ModeTokenOrPeer {
					wantGuess = "unauthenticated"
				}
				guesser := startChild(t, "call", childEnv(addr, proto, "guessed-token-0123456789", false)...)
				if got := guesser.Next(t, "result"); got != wantGuess {
					t.Errorf("foreign process with a guessed token: %s, want %s", got, wantGuess)
				}
				if got := call(t.Context(), proto, addr, ""); got != "permission_denied" {
					t.Errorf("the engine's own process: %s, want permission_denied", got)
				}
				if n := init.calls.Load(); n != 0 {
					t.Fatalf("Initializer reached %d times by foreign callers", n)
				}

				if _, err := io.WriteString(plugin.Stdin, "go\n"); err != nil {
					t.Fatal(err)
				}
				if got := plugin.Next(t, "result"); got != "ok" {
					t.Fatalf("launched plugin after the race: %s, want ok", got)
				}
			})
		}
	}
}

// TestTokenOrPeer covers the combinations of the default mode in-process
// (this process is not the launched tree): the token alone admits.
func TestTokenOrPeer(t *testing.T) {
	t.Parallel()
	requirePeer(t)
	p := newPolicy(t, handshakeauth.ModeTokenOrPeer, zerolog.Nop())
	addr, _ := serve(t, p)
	plugin := startChild(t, "call", childEnv(addr, "grpc", "", true)...)
	p.SetPid(plugin.Cmd.Process.Pid)
	for _, tc := range []struct{ token, want string }{
		{testToken, "ok"},
		{"", "permission_denied"},
		{"wrong-token-0123456789", "unauthenticated"},
	} {
		if got := call(t.Context(), "grpc", addr, tc.token); got != tc.want {
			t.Errorf("token %q: %s, want %s", tc.token, got, tc.want)
		}
	}
}

// TestLaunchedPluginWithWrongToken: in token-or-peer the launched tree is
// admitted even with a stale token; in token mode it is not.
func TestLaunchedPluginWithWrongToken(t *testing.T) {
	t.Parallel()
	requirePeer(t)
	for _, tc := range []struct {
		mode handshakeauth.Mode
		want string
	}{
		{handshakeauth.ModeTokenOrPeer, "ok"},
		{handshakeauth.ModeToken, "unauthenticated"},
	} {
		t.Run(tc.mode.String(), func(t *testing.T) {
			t.Parallel()
			p := newPolicy(t, tc.mode, zerolog.Nop())
			addr, _ := serve(t, p)
			c := startChild(t, "call", childEnv(addr, "grpc", "stale-token-0123456789", false)...)
			p.SetPid(c.Cmd.Process.Pid)
			if got := c.Next(t, "result"); got != tc.want {
				t.Fatalf("%s, want %s", got, tc.want)
			}
		})
	}
}

// TestPeerWithoutPid: a peer check waits for SetPid; SetPid(0) (the plugin
// failed to start) refuses at once, and a context that ends refuses too.
func TestPeerWithoutPid(t *testing.T) {
	t.Parallel()
	requirePeer(t)
	p := newPolicy(t, handshakeauth.ModePeer, zerolog.Nop())
	call := server.Call{PeerAddr: "127.0.0.1:1", Header: http.Header{}}
	ctx, cancel := context.WithTimeout(t.Context(), 50*time.Millisecond)
	defer cancel()
	if err := p.Authorize(ctx, call); !errors.Is(err, vmre.ErrPermissionDenied) || !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("before SetPid: %v, want permission denied (deadline)", err)
	}
	p.SetPid(0)
	// Refused at once means refused by SetPid(0), not by a context ending:
	// with a minute's deadline, a check still waiting for a pid would
	// return DeadlineExceeded.
	ctx, cancel = context.WithTimeout(t.Context(), time.Minute)
	defer cancel()
	if err := p.Authorize(ctx, call); !errors.Is(err, vmre.ErrPermissionDenied) || errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("after SetPid(0): %v, want permission denied (not a deadline)", err)
	}
}

// TestTokenNeverLogged: refusals are logged, with neither the real token
// nor a guessed one in the log or in the error sent back.
func TestTokenNeverLogged(t *testing.T) {
	t.Parallel()
	requirePeer(t)
	var buf bytes.Buffer
	var mu sync.Mutex
	log := zerolog.New(zerolog.SyncWriter(lockedWriter{&buf, &mu})).Level(zerolog.DebugLevel)
	p := newPolicy(t, handshakeauth.ModeTokenOrPeer, log)
	p.SetPid(os.Getppid()) // not this process's tree
	guess := "guessed-token-0123456789"
	for _, tok := range []string{testToken, guess, "", testToken + "x"} {
		h := http.Header{}
		if tok != "" {
			h.Set(vmre.HandshakeTokenHeader, tok)
		}
		err := p.Authorize(t.Context(), server.Call{PeerAddr: "127.0.0.1:1", Header: h})
		if err != nil && (strings.Contains(err.Error(), testToken) || strings.Contains(err.Error(), guess)) {
			t.Errorf("error carries a token: %v", err)
		}
	}
	mu.Lock()
	defer mu.Unlock()
	out := buf.String()
	if !strings.Contains(out, "handshake refused") {
		t.Fatalf("refusals were not logged: %q", out)
	}
	if strings.Contains(out, testToken) || strings.Contains(out, guess) || strings.Contains(out, testToken[:12]) {
		t.Fatalf("log carries a token: %s", out)
	}
}

type lockedWriter struct {
	w  io.Writer
	mu *sync.Mutex
}

func (l lockedWriter) Write(b []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.w.Write(b)
}

// TestForeignFlood: many concurrent foreign calls are all refused, the
// peer-check limit does not deadlock, and the plugin still gets in.
func TestForeignFlood(t *testing.T) {
	t.Parallel()
	requirePeer(t)
	p := newPolicy(t, handshakeauth.ModeTokenOrPeer, zerolog.Nop())
	addr, init := serve(t, p)
	plugin := startChild(t, "call", childEnv(addr, "grpc", "", true)...)
	p.SetPid(plugin.Cmd.Process.Pid)
	var wg sync.WaitGroup
	var wrong, shed atomic.Int64
	for range 200 {
		wg.Go(func() {
			got, again := floodCall(t.Context(), "grpc", addr, "")
			shed.Add(int64(again))
			if got != "permission_denied" {
				wrong.Add(1)
				t.Errorf("foreign call: %s, want permission_denied", got)
			}
		})
	}
	wg.Wait()
	t.Logf("%d calls made again after a dropped connection", shed.Load())
	if n := wrong.Load(); n != 0 {
		t.Fatalf("%d foreign calls were not refused with permission_denied (%d calls made again after a dropped connection)", n, shed.Load())
	}
	if _, err := io.WriteString(plugin.Stdin, "go\n"); err != nil {
		t.Fatal(err)
	}
	if got := plugin.Next(t, "result"); got != "ok" {
		t.Fatalf("plugin after the flood: %s", got)
	}
	if init.calls.Load() != 1 {
		t.Fatalf("Initializer called %d times, want 1", init.calls.Load())
	}
}

// TestRefusalsCounted: every refused call is counted once, under the
// reason the policy refused it for; admitted calls are not counted.
func TestRefusalsCounted(t *testing.T) {
	t.Parallel()
	requirePeer(t)
	newCounted := func(mode handshakeauth.Mode) (*handshakeauth.Policy, *server.Refusals) {
		refusals := new(server.Refusals)
		p, err := handshakeauth.New(handshakeauth.Config{Mode: mode, Token: testToken, Refusals: refusals})
		if err != nil {
			t.Fatal(err)
		}
		return p, refusals
	}
	tokenOnly, tokenCounts := newCounted(handshakeauth.ModeToken)
	tokenAddr, _ := serve(t, tokenOnly)
	either, eitherCounts := newCounted(handshakeauth.ModeTokenOrPeer)
	eitherAddr, _ := serve(t, either)
	plugin := startChild(t, "call", childEnv(eitherAddr, "grpc", "", true)...)
	either.SetPid(plugin.Cmd.Process.Pid)
	noPid, noPidCounts := newCounted(handshakeauth.ModePeer)
	noPid.SetPid(0)
	noPidAddr, _ := serve(t, noPid)

	for _, c := range []struct{ addr, token string }{
		{tokenAddr, ""}, {tokenAddr, ""}, {tokenAddr, "wrong-token-0123456789"}, {tokenAddr, testToken},
		{eitherAddr, ""}, {eitherAddr, "wrong-token-0123456789"}, {eitherAddr, testToken},
		{noPidAddr, ""},
	} {
		call(t.Context(), "grpc", c.addr, c.token)
	}
	for _, tc := range []struct {
		name   string
		counts *server.Refusals
		want   map[server.RefusalReason]uint64
	}{
		{"token", tokenCounts, map[server.RefusalReason]uint64{server.RefusedNoToken: 2, server.RefusedBadToken: 1}},
		{"token-or-peer", eitherCounts, map[server.RefusalReason]uint64{server.RefusedForeignPeer: 1, server.RefusedBadToken: 1}},
		{"peer without pid", noPidCounts, map[server.RefusalReason]uint64{server.RefusedUnverified: 1}},
	} {
		for _, reason := range server.RefusalReasons() {
			if got := tc.counts.Count(reason); got != tc.want[reason] {
				t.Errorf("%s: %s refusals = %d, want %d", tc.name, reason, got, tc.want[reason])
			}
		}
	}
}

// TestUndecodableCallIsRefused: a caller without the token whose calls do
// not even decode is refused by the policy all the same (counted, and its
// connection paced from then on), not only by the server's decoding:
// otherwise a flood of such calls would never be paced.
func TestUndecodableCallIsRefused(t *testing.T) {
	t.Parallel()
	var refusals server.Refusals
	p, err := handshakeauth.New(handshakeauth.Config{Mode: handshakeauth.ModeToken, Token: testToken, Refusals: &refusals})
	if err != nil {
		t.Fatal(err)
	}
	addr, init := serve(t, p)
	res, err := http.Post("http://"+addr+server.InitializeProcedure, "application/json", strings.NewReader(`{"protocolVersion":`))
	if err != nil {
		t.Fatal(err)
	}
	_, _ = io.Copy(io.Discard, res.Body)
	_ = res.Body.Close()
	if res.StatusCode != http.StatusBadRequest {
		t.Errorf("HTTP %d, want 400", res.StatusCode)
	}
	if n := refusals.Count(server.RefusedNoToken); n != 1 || init.calls.Load() != 0 {
		t.Errorf("%d refusals without a token, %d calls reached the Initializer; want 1, 0", n, init.calls.Load())
	}
}
