//go:build linux

package subprocess_test

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"connectrpc.com/connect"
	"github.com/rs/zerolog"
	"github.com/vmre/vmre"
	"github.com/vmre/vmre/client"
	handshakev1 "github.com/vmre/vmre/gen/vmre/handshake/v1"
	"github.com/vmre/vmre/internal/syncbuf"
	"github.com/vmre/vmre/subprocess"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/emptypb"
)

// Child modes of the tests in this file, added to main_ext_test.go's table.
const (
	// foreignAddrEnv is the engine address a foreign caller attacks.
	foreignAddrEnv = "SUBPROCESS_TEST_FOREIGN_ENGINE"
	// foreignTokenEnv, if set, is the (forged) token a foreign caller sends.
	foreignTokenEnv = "SUBPROCESS_TEST_FOREIGN_TOKEN"
	// foreignVMAddr is the address a foreign caller announces.
	foreignVMAddr = "127.0.0.1:6666"
	// gateFd is the descriptor a racing plugin waits on (cmd.ExtraFiles[0]).
	gateFd = 3
)

func init() {
	childModes["race-client"] = func() int { return childRace(handshakeVMREClient) }
	childModes["race-grpc"] = func() int { return childRace(handshakeGRPCNoToken) }
	childModes["foreign-grpc"] = childForeignGRPC
	childModes["foreign-json"] = childForeignJSON
	childModes["tiny"] = childTiny
	childModes["env-dump"] = childEnvDump
}

// handshakeVMREClient handshakes through vmre's client, which sends the
// token from the environment.
func handshakeVMREClient(ctx context.Context, vmAddr string) error {
	return client.Handshake(ctx, childVersion(), vmAddr)
}

// handshakeGRPCNoToken handshakes as a plugin built against avalanchego
// does: a plain grpc-go client that knows nothing of vmre's token.
func handshakeGRPCNoToken(ctx context.Context, vmAddr string) error {
	addr, err := client.EngineAddrFromEnv()
	if err != nil {
		return err
	}
	return grpcInitialize(ctx, addr, vmAddr)
}

func grpcInitialize(ctx context.Context, engineAddr, vmAddr string) error {
	conn, err := grpc.NewClient("passthrough:///"+engineAddr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		return err
	}
	defer conn.Close()
	req := &handshakev1.InitializeRequest{ProtocolVersion: childVersion(), Addr: vmAddr}
	return conn.Invoke(ctx, "/vm.runtime.Runtime/Initialize", req, &emptypb.Empty{})
}

// childRace prints the engine address, waits until the test closes the
// gate (the write end of the pipe on fd 3), then handshakes with
// handshake and waits for SIGTERM.
func childRace(handshake func(context.Context, string) error) int {
	signals := make(chan os.Signal, 1)
	signal.Notify(signals, syscall.SIGTERM)
	fmt.Printf("engine-addr %s\n", os.Getenv(vmre.EngineAddressKey))
	gate := os.NewFile(gateFd, "gate")
	if _, err := io.Copy(io.Discard, gate); err != nil {
		fmt.Fprintln(os.Stderr, "gate:", err)
		return 1
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	vmAddr := "127.0.0.1:7777"
	if err := handshake(ctx, vmAddr); err != nil {
		fmt.Fprintf(os.Stderr, "handshake: %v\n", err)
		return 1
	}
	fmt.Println("handshake done")
	<-signals
	return 0
}

// childForeignGRPC is a local process that found the engine's port: a
// plain grpc-go client calls Initialize and prints how the engine answered
// ("refused CODE" or "accepted").
func childForeignGRPC() int {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	err := grpcInitialize(ctx, os.Getenv(foreignAddrEnv), foreignVMAddr)
	if err != nil {
		fmt.Printf("refused %s: %s\n", connect.Code(status.Code(err)), status.Convert(err).Message())
		return 0
	}
	fmt.Println("accepted")
	return 0
}

// childForeignJSON does what `curl -H 'Content-Type: application/json' -d
// '{...}' http://ADDR/vm.runtime.Runtime/Initialize` does, with a forged
// token header if foreignTokenEnv is set.
func childForeignJSON() int {
	body := fmt.Sprintf(`{"protocolVersion":%d,"addr":%q}`, childVersion(), foreignVMAddr)
	req, err := http.NewRequest(http.MethodPost, "http://"+os.Getenv(foreignAddrEnv)+"/vm.runtime.Runtime/Initialize", strings.NewReader(body))
	if err != nil {
		fmt.Println("error", err)
		return 1
	}
	req.Header.Set("Content-Type", "application/json")
	if token := os.Getenv(foreignTokenEnv); token != "" {
		req.Header.Set(vmre.HandshakeTokenHeader, token)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		fmt.Println("error", err)
		return 1
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if resp.StatusCode == http.StatusOK {
		fmt.Println("accepted")
		return 0
	}
	var answer struct{ Code, Message string }
	if err := json.Unmarshal(b, &answer); err != nil {
		fmt.Printf("error HTTP %d: %q\n", resp.StatusCode, b)
		return 1
	}
	fmt.Printf("refused %s: HTTP %d: %s\n", answer.Code, resp.StatusCode, answer.Message)
	return 0
}

// childTiny handshakes (announcing an address it does not serve) and exits
// at SIGTERM: the cheapest well-behaved plugin.
func childTiny() int {
	signals := make(chan os.Signal, 1)
	signal.Notify(signals, syscall.SIGTERM)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := client.Handshake(ctx, childVersion(), "127.0.0.1:1"); err != nil {
		fmt.Fprintln(os.Stderr, "handshake:", err)
		return 1
	}
	<-signals
	return 0
}

// childEnvDump prints its environment, one "env KEY=VALUE" line per entry,
// then "env-end", handshakes and waits for SIGTERM.
func childEnvDump() int {
	signals := make(chan os.Signal, 1)
	signal.Notify(signals, syscall.SIGTERM)
	w := bufio.NewWriter(os.Stdout)
	for _, kv := range os.Environ() {
		fmt.Fprintf(w, "env %s\n", kv)
	}
	fmt.Fprintln(w, "env-end")
	if err := w.Flush(); err != nil {
		return 1
	}
	if _, err := handshake(childVersion()); err != nil {
		fmt.Fprintln(os.Stderr, "handshake:", err)
		return 1
	}
	<-signals
	return 0
}

// --- the race -------------------------------------------------------------

// race launches plugin (a race-* mode) under auth, waits for it to report
// the engine address, lets each foreign caller attack the handshake while
// the plugin waits at its gate, then opens the gate. It returns the
// foreigners' answers and Bootstrap's outcome.
type raceResult struct {
	foreign map[string]string // caller name -> its output line
	proc    *subprocess.Process
	err     error
	out     *collector
	log     *syncbuf.Buffer
}

type foreignCaller struct {
	name string
	mode string
	env  []string
}

var foreignCallers = []foreignCaller{
	{"grpc-go", "foreign-grpc", nil},
	{"json", "foreign-json", nil},
	{"json with a forged token", "foreign-json", []string{foreignTokenEnv + "=forged-token-forged-token-forged"}},
}

func race(t *testing.T, auth, plugin string, callers []foreignCaller) raceResult {
	t.Helper()
	gateR, gateW, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	closeGate := sync.OnceFunc(func() { gateW.Close() })

	res := raceResult{foreign: map[string]string{}, out: newCollector(), log: &syncbuf.Buffer{}}
	cmd := childCmd(t, plugin, noRaceExitDelay)
	cmd.ExtraFiles = []*os.File{gateR}
	var mode subprocess.HandshakeAuth
	if err := mode.UnmarshalText([]byte(auth)); err != nil {
		t.Fatal(err)
	}
	cfg := &subprocess.Config{
		HandshakeAuth:    mode,
		HandshakeTimeout: 30 * time.Second,
		Log:              zerolog.New(res.log),
		OnOutput:         res.out.add,
	}
	// However the test ends, Bootstrap has returned before the gate's read
	// end, which cmd.ExtraFiles hands to the plugin, is closed, and the
	// plugin it started is stopped.
	bootstrapped := make(chan struct{})
	go func() {
		defer close(bootstrapped)
		res.proc, res.err = subprocess.Bootstrap(context.Background(), cmd, cfg)
	}()
	t.Cleanup(func() {
		closeGate()
		<-bootstrapped
		_ = gateR.Close()
		if res.proc != nil {
			res.proc.Stop(context.Background())
		}
	})

	line := res.out.waitForUnless(t, func(l outLine) bool { return strings.HasPrefix(l.Text, "engine-addr ") }, bootstrapped)
	engineAddr := strings.TrimPrefix(line.Text, "engine-addr ")

	// The foreign callers are the test's children, not the plugin's: what
	// any local process can start.
	var wg sync.WaitGroup
	var mu sync.Mutex
	for _, c := range callers {
		wg.Go(func() {
			exe, err := os.Executable()
			if err != nil {
				t.Error(err)
				return
			}
			fc := exec.Command(exe)
			fc.Env = append(os.Environ(), childModeEnv+"="+c.mode, foreignAddrEnv+"="+engineAddr, noRaceExitDelay)
			fc.Env = append(fc.Env, c.env...)
			out, err := fc.Output()
			if err != nil {
				t.Errorf("foreign caller %s: %v (output %q)", c.name, err, out)
			}
			mu.Lock()
			res.foreign[c.name] = strings.TrimSpace(string(out))
			mu.Unlock()
		})
	}
	wg.Wait()
	closeGate()

	// Bootstrap ends by its handshake timeout at the latest.
	select {
	case <-bootstrapped:
	case <-hangBound(t):
		t.Fatal("Bootstrap did not return")
	}
	return res
}

// TestForeignCallerRacingHandshakeIsRefused: while the launched plugin
// holds back its handshake, foreign local processes (a plain grpc-go
// client, a curl-style JSON client, one with a forged token) call
// Initialize on the engine's handshake port. They are refused and decide
// nothing; then the plugin's own handshake succeeds, whether it sends the
// token (vmre's client) or nothing (a grpc-go plugin built for
// avalanchego, admitted by peer check) — or, in token mode, the tokenless
// plugin is refused too.
func TestForeignCallerRacingHandshakeIsRefused(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name, auth, plugin string
		wantForeign        map[string]string // caller -> code
		wantPluginErr      string            // in the plugin's stderr; "" means success
	}{
		{
			name: "token-or-peer, vmre client plugin", auth: "token-or-peer", plugin: "race-client",
			wantForeign: map[string]string{"grpc-go": "permission_denied", "json": "permission_denied", "json with a forged token": "unauthenticated"},
		},
		{
			name: "token-or-peer, grpc-go plugin without token", auth: "token-or-peer", plugin: "race-grpc",
			wantForeign: map[string]string{"grpc-go": "permission_denied", "json": "permission_denied", "json with a forged token": "unauthenticated"},
		},
		{
			name: "default policy, grpc-go plugin without token", auth: "", plugin: "race-grpc",
			wantForeign: map[string]string{"grpc-go": "permission_denied", "json": "permission_denied", "json with a forged token": "unauthenticated"},
		},
		{
			name: "peer, grpc-go plugin without token", auth: "peer", plugin: "race-grpc",
			wantForeign: map[string]string{"grpc-go": "permission_denied", "json": "permission_denied", "json with a forged token": "permission_denied"},
		},
		{
			name: "token, vmre client plugin", auth: "token", plugin: "race-client",
			wantForeign: map[string]string{"grpc-go": "unauthenticated", "json": "unauthenticated", "json with a forged token": "unauthenticated"},
		},
		{
			name: "token refuses a grpc-go plugin without token", auth: "token", plugin: "race-grpc",
			wantForeign:   map[string]string{"grpc-go": "unauthenticated", "json": "unauthenticated", "json with a forged token": "unauthenticated"},
			wantPluginErr: "Unauthenticated",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			res := race(t, tt.auth, tt.plugin, foreignCallers)
			t.Logf("foreign callers: %q", res.foreign)
			for name, code := range tt.wantForeign {
				if got := res.foreign[name]; !strings.HasPrefix(got, "refused "+code+":") {
					t.Errorf("foreign %s caller: %q, want refused %s", name, got, code)
				}
			}
			if got := strings.Count(res.log.String(), `"message":"handshake refused"`); got != len(foreignCallers)+boolInt(tt.wantPluginErr != "") {
				t.Errorf("%d refusals logged, want %d:\n%s", got, len(foreignCallers)+boolInt(tt.wantPluginErr != ""), res.log)
			}
			if tt.wantPluginErr != "" {
				var exitErr *vmre.ExitError
				if !errors.As(res.err, &exitErr) || !errors.Is(res.err, vmre.ErrHandshakeFailed) ||
					!strings.Contains(strings.Join(streamTail(exitErr, subprocess.StreamStderr), "\n"), tt.wantPluginErr) {
					t.Fatalf("Bootstrap: %v, want the plugin to exit after a %s refusal", res.err, tt.wantPluginErr)
				}
				return
			}
			if res.err != nil {
				t.Fatalf("Bootstrap after the foreign callers: %v", res.err)
			}
			if res.proc.Status().Addr != "127.0.0.1:7777" {
				t.Errorf("Status.Addr = %q, want the plugin's own 127.0.0.1:7777", res.proc.Status().Addr)
			}
			res.out.waitFor(t, textIs("handshake done"))
		})
	}
}

func boolInt(b bool) int {
	if b {
		return 1
	}
	return 0
}

// TestNoneModeLetsForeignCallerWin documents the risk of HandshakeAuth
// "none" (avalanchego's behaviour): the first local caller decides the
// handshake, and the engine believes its address; the real plugin is
// refused already_exists.
func TestNoneModeLetsForeignCallerWin(t *testing.T) {
	t.Parallel()
	res := race(t, "none", "race-client", foreignCallers[:1])
	if got := res.foreign["grpc-go"]; got != "accepted" {
		t.Fatalf("foreign caller: %q, want accepted", got)
	}
	if res.err != nil {
		t.Fatalf("Bootstrap: %v", res.err)
	}
	if res.proc.Status().Addr != foreignVMAddr {
		t.Errorf("Status.Addr = %q, want the foreign caller's %s", res.proc.Status().Addr, foreignVMAddr)
	}
	// The plugin learns it lost (the server is shut down after the first
	// answer, so it may see already_exists or a closed port).
	l := res.out.waitFor(t, func(l outLine) bool { return strings.HasPrefix(l.Text, "handshake: ") })
	if !strings.Contains(l.Text, "handshake failed") {
		t.Errorf("plugin's handshake: %q", l.Text)
	}
}

// TestEnvPolicy: the clean policy passes only the allowlisted variables,
// the explicit entries and the engine's own; both policies drop inherited
// engine addresses and secrets and set this launch's.
func TestEnvPolicy(t *testing.T) {
	t.Parallel()
	base := []string{
		"PATH=/usr/bin:/bin", "HOME=/home/vm", "LC_ALL=C.UTF-8", "LC_TIME=C",
		"CANARY_SECRET=do-not-pass", "AWS_SECRET_ACCESS_KEY=nope",
		vmre.HandshakeTokenKey + "=stale-token-from-a-parent-engine",
		vmre.AvalancheEngineAddressKey + "=10.9.9.9:1",
		childModeEnv + "=env-dump",
	}
	tests := []struct {
		name    string
		cfg     subprocess.Config
		want    []string // exact entries expected besides the engine's
		wantNot []string // keys that must be absent
		exact   bool     // nothing else may be present
	}{
		{
			name:    "clean with the default allowlist",
			cfg:     subprocess.Config{EnvPolicy: subprocess.EnvClean, Env: []string{childModeEnv + "=env-dump", "EXTRA=1", "HOME=/srv/vm"}},
			want:    []string{"PATH=/usr/bin:/bin", "HOME=/srv/vm", "LC_ALL=C.UTF-8", "LC_TIME=C", childModeEnv + "=env-dump", "EXTRA=1"},
			wantNot: []string{"CANARY_SECRET", "AWS_SECRET_ACCESS_KEY"},
			exact:   true,
		},
		{
			name:    "clean with an explicit allowlist",
			cfg:     subprocess.Config{EnvPolicy: subprocess.EnvClean, EnvKeep: []string{"PATH", childModeEnv}},
			want:    []string{"PATH=/usr/bin:/bin", childModeEnv + "=env-dump"},
			wantNot: []string{"HOME", "LC_ALL", "CANARY_SECRET"},
			exact:   true,
		},
		{
			name:    "inherit",
			cfg:     subprocess.Config{Env: []string{"EXTRA=2", "CANARY_SECRET=overridden"}},
			want:    []string{"PATH=/usr/bin:/bin", "HOME=/home/vm", "AWS_SECRET_ACCESS_KEY=nope", "CANARY_SECRET=overridden", "EXTRA=2"},
			wantNot: nil,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			out := newCollector()
			cfg := tt.cfg
			cfg.OnOutput = out.add
			cmd := childCmd(t, "env-dump")
			cmd.Env = slices.Clone(base)
			p, err := subprocess.Bootstrap(t.Context(), cmd, &cfg)
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { p.Stop(context.Background()) })
			out.waitFor(t, textIs("env-end"))
			env := map[string]string{}
			for _, l := range out.snapshot() {
				if kv, ok := strings.CutPrefix(l.Text, "env "); ok {
					k, v, _ := strings.Cut(kv, "=")
					if _, dup := env[k]; dup {
						t.Errorf("%s set twice", k)
					}
					env[k] = v
				}
			}
			for _, kv := range tt.want {
				k, v, _ := strings.Cut(kv, "=")
				if got, ok := env[k]; !ok || got != v {
					t.Errorf("%s = %q (set: %v), want %q", k, got, ok, v)
				}
			}
			for _, k := range tt.wantNot {
				if _, ok := env[k]; ok {
					t.Errorf("%s passed to the plugin", k)
				}
			}
			engineAddr := env[vmre.EngineAddressKey]
			for _, k := range vmre.EngineAddressKeys() {
				if env[k] == "" || env[k] != engineAddr || env[k] == "10.9.9.9:1" {
					t.Errorf("%s = %q, want the launch's engine address", k, env[k])
				}
			}
			if tok := env[vmre.HandshakeTokenKey]; len(tok) < 16 || tok == "stale-token-from-a-parent-engine" {
				t.Errorf("token = %q, want a fresh secret", tok)
			}
			if tt.exact {
				allowed := len(tt.want) + len(vmre.EngineAddressKeys()) + 1
				if len(env) != allowed {
					keys := make([]string, 0, len(env))
					for k := range env {
						keys = append(keys, k)
					}
					slices.Sort(keys)
					t.Errorf("plugin sees %d variables %v, want exactly %d", len(env), keys, allowed)
				}
			}
		})
	}
}

// TestPWDFollowsDir: as os/exec does, a plugin started with cmd.Dir set
// and cmd.Env nil gets PWD set to the absolute Dir, not the engine's PWD;
// an explicit cmd.Env is passed as it is. Not parallel: it sets the
// engine's environment, which the plugin inherits when cmd.Env is nil.
func TestPWDFollowsDir(t *testing.T) {
	t.Setenv(childModeEnv, "env-dump")
	t.Setenv("PWD", "/engine/pwd")
	abs := t.TempDir()
	rel, err := filepath.Abs("testdata")
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name    string
		dir     string
		env     []string
		wantPWD string
	}{
		{"absolute dir", abs, nil, abs},
		{"relative dir", "testdata", nil, rel},
		{"explicit env", abs, append(os.Environ(), "PWD=/from/env"), "/from/env"},
		{"no dir", "", nil, "/engine/pwd"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			exe, err := os.Executable()
			if err != nil {
				t.Fatal(err)
			}
			out := newCollector()
			cmd := subprocess.NewCmd(exe)
			cmd.Dir, cmd.Env = tt.dir, tt.env
			p, err := subprocess.Bootstrap(t.Context(), cmd, &subprocess.Config{OnOutput: out.add})
			if err != nil {
				t.Fatal(err)
			}
			p.Stop(t.Context())
			var pwds []string
			for _, l := range out.snapshot() {
				if v, ok := strings.CutPrefix(l.Text, "env PWD="); ok {
					pwds = append(pwds, v)
				}
			}
			if len(pwds) != 1 || pwds[0] != tt.wantPWD {
				t.Errorf("plugin's PWD = %q, want [%q]", pwds, tt.wantPWD)
			}
		})
	}
}

// TestInheritedEnvFollowsEngine: a plugin that inherits the engine's
// environment (cmd.Env nil) sees it as it is at its own launch, whatever
// earlier launches saw, under the settings of its own launch, and gets
// each key once: a custom address variable inherited from the engine
// carries this launch's address, not the inherited value. Not parallel:
// it sets the engine's environment.
func TestInheritedEnvFollowsEngine(t *testing.T) {
	t.Setenv(childModeEnv, "env-dump")
	t.Setenv("MY_ENGINE", "10.9.9.9:1")
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	launch := func(cfg subprocess.Config) map[string]string {
		t.Helper()
		out := newCollector()
		cfg.OnOutput = out.add
		p, err := subprocess.Bootstrap(t.Context(), subprocess.NewCmd(exe), &cfg)
		if err != nil {
			t.Fatal(err)
		}
		p.Stop(t.Context())
		env := map[string]string{}
		for _, l := range out.snapshot() {
			if kv, ok := strings.CutPrefix(l.Text, "env "); ok {
				k, v, _ := strings.Cut(kv, "=")
				if _, dup := env[k]; dup {
					t.Errorf("%s set twice", k)
				}
				env[k] = v
			}
		}
		return env
	}
	custom := subprocess.Config{EnvVars: []string{"MY_ENGINE", vmre.EngineAddressKey}}
	tests := []struct {
		name   string
		setenv string // KEY=VALUE set in the engine before the launch, or ""
		cfg    subprocess.Config
		want   map[string]string // "" means absent
	}{
		{"first launch", "CANARY=1", custom, map[string]string{"CANARY": "1", "EXTRA": ""}},
		{"same settings, engine unchanged", "", custom, map[string]string{"CANARY": "1", "EXTRA": ""}},
		{"engine variable changed", "CANARY=2", custom, map[string]string{"CANARY": "2"}},
		{"engine variable added", "CANARY_NEW=3", custom, map[string]string{"CANARY": "2", "CANARY_NEW": "3"}},
		{"other settings", "", subprocess.Config{EnvVars: custom.EnvVars, Env: []string{"EXTRA=x"}}, map[string]string{"CANARY": "2", "EXTRA": "x"}},
		{"clean policy", "", subprocess.Config{EnvVars: custom.EnvVars, EnvPolicy: subprocess.EnvClean, EnvKeep: []string{childModeEnv, "MY_ENGINE"}}, map[string]string{"CANARY": "", "EXTRA": ""}},
		{"back to the first settings", "", custom, map[string]string{"CANARY": "2", "CANARY_NEW": "3", "EXTRA": ""}},
	}
	for _, tt := range tests {
		if k, v, ok := strings.Cut(tt.setenv, "="); ok {
			t.Setenv(k, v)
		}
		env := launch(tt.cfg)
		for k, want := range tt.want {
			if got, ok := env[k]; got != want || ok != (want != "") {
				t.Errorf("%s: %s = %q (set: %v), want %q", tt.name, k, got, ok, want)
			}
		}
		if env["MY_ENGINE"] == "" || env["MY_ENGINE"] != env[vmre.EngineAddressKey] {
			t.Errorf("%s: MY_ENGINE = %q, %s = %q, want the launch's engine address in both", tt.name, env["MY_ENGINE"], vmre.EngineAddressKey, env[vmre.EngineAddressKey])
		}
	}
}

// TestNewConfigFieldsValidated: bad auth and environment settings
// are configuration errors, reported before anything is started.
func TestNewConfigFieldsValidated(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name    string
		cfg     subprocess.Config
		wantMsg string
	}{
		{"unknown auth mode", subprocess.Config{HandshakeAuth: subprocess.HandshakeAuth(99)}, "unknown handshake auth mode 99"},
		{"unknown env policy", subprocess.Config{EnvPolicy: subprocess.EnvPolicy(9)}, "unknown env policy 9"},
		{"keep list with inherit", subprocess.Config{EnvKeep: []string{"PATH"}}, "needs the clean env policy"},
		{"env entry without =", subprocess.Config{Env: []string{"JUSTKEY"}}, "not KEY=VALUE"},
		{"env entry sets the token", subprocess.Config{Env: []string{vmre.HandshakeTokenKey + "=x"}}, "set by the engine"},
		{"env entry sets a custom address variable", subprocess.Config{EnvVars: []string{"MY_ENGINE"}, Env: []string{"MY_ENGINE=1.2.3.4:5"}}, "set by the engine"},
		{"bad keep name", subprocess.Config{EnvPolicy: subprocess.EnvClean, EnvKeep: []string{"A=B"}}, "env keep"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			marker := t.TempDir() + "/started"
			cmd := exec.Command("/bin/sh", "-c", "touch "+marker)
			p, err := subprocess.Bootstrap(t.Context(), cmd, &tt.cfg)
			if !errors.Is(err, vmre.ErrInvalidConfig) || !strings.Contains(err.Error(), tt.wantMsg) {
				t.Errorf("err = %v, want ErrInvalidConfig mentioning %q", err, tt.wantMsg)
			}
			if p != nil || cmd.Process != nil {
				t.Error("something was started")
			}
			if _, err := os.Stat(marker); err == nil {
				t.Error("the plugin ran")
			}
		})
	}
}

// TestPolicyText: the policies parse from the text a flag or a config file
// holds, and print back the same; unknown names are configuration errors.
func TestPolicyText(t *testing.T) {
	t.Parallel()
	for _, name := range []string{"token", "none"} {
		var a subprocess.HandshakeAuth
		if err := a.UnmarshalText([]byte(name)); err != nil || a.String() != name {
			t.Errorf("handshake auth %q: parsed %v, %v", name, a, err)
		}
	}
	for _, name := range []string{"inherit", "clean"} {
		var p subprocess.EnvPolicy
		if err := p.UnmarshalText([]byte(name)); err != nil || p.String() != name {
			t.Errorf("env policy %q: parsed %v, %v", name, p, err)
		}
	}
	var a subprocess.HandshakeAuth
	if err := a.UnmarshalText([]byte("trust-me")); !errors.Is(err, vmre.ErrInvalidConfig) || !strings.Contains(err.Error(), `handshake auth "trust-me"`) {
		t.Errorf("handshake auth trust-me: %v", err)
	}
	var p subprocess.EnvPolicy
	if err := p.UnmarshalText([]byte("dirty")); !errors.Is(err, vmre.ErrInvalidConfig) || !strings.Contains(err.Error(), `env policy "dirty"`) {
		t.Errorf("env policy dirty: %v", err)
	}
}
