package e2e

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// The README's curl walkthrough: `vmre run --attach`, then the printed curl
// handshake pasted as is, then every curl block of the README marked
// "<!-- e2e: curl -->", run in order by sh after the printed export line
// and the API_TOKEN_FILE the README has the reader set, and its answer
// compared with the JSON block that follows it. Only the API port and
// volatile fields (times, pids, peer addresses) may differ. Pasted without
// that environment, a block that reads it must fail, naming the command
// that sets it, rather than call somewhere else.
func TestCurl(t *testing.T) {
	t.Parallel()
	requireTool(t, "curl")
	blocks := docBlocks(t)
	e := startVMRE(t, "--attach")
	apiAddr := e.apiAddr()
	_, tokenPath := e.token()
	attach, _, _ := strings.Cut(e.line("attach:"), " ")
	printed := "export " + e.line("export ")
	if !strings.Contains(printed, "VMRE_ENGINE_ADDR="+attach+" ") || !strings.Contains(printed, "VMRE_HANDSHAKE_TOKEN=") {
		t.Fatalf("env line = %q", printed)
	}
	env := printed + "\nexport API_TOKEN_FILE=" + tokenPath
	sh := func(cmdline string) string {
		t.Helper()
		out, err := runCmd(t, 20*time.Second, t.TempDir(), "sh", "-c", cmdline)
		if err != nil {
			t.Fatalf("%s: %v\n%s", cmdline, err, out)
		}
		return strings.TrimSpace(out)
	}

	// The printed command, pasted as is, registers 127.0.0.1:50001 ...
	if out := sh("curl " + e.line("curl ")); out != "{}" {
		t.Fatalf("printed curl answered %q, want {}", out)
	}
	// ... and the documented handshake of the same address refreshes it.
	for _, b := range blocks {
		cmd := strings.ReplaceAll(b.command, "127.0.0.1:9660", apiAddr)
		got := sh(env + "\n" + cmd)
		if err := sameJSON(b.want, got); err != nil {
			t.Errorf("%s:%d: %s\ngot  %s\nwant %s\n%v", b.file, b.line, b.command, got, b.want, err)
		}
		if !strings.Contains(cmd, "$") {
			continue
		}
		out, err := runCmd(t, 20*time.Second, t.TempDir(), "sh", "-c", "unset VMRE_ENGINE_ADDR VMRE_HANDSHAKE_TOKEN API_TOKEN_FILE\n"+cmd)
		if err == nil || !strings.Contains(out, "vmre run") {
			t.Errorf("%s:%d: without the environment: %v, want a failure naming vmre run\n%s", b.file, b.line, err, out)
		}
	}
}

// Node interop: `vmre run --attach`; the Node client (grpc-js, proto files
// loaded at run time) watches the API port, handshakes on the attach
// endpoint and sees its runtime appear in the watch stream; list shows it.
func TestNodeAttach(t *testing.T) {
	t.Parallel()
	node := requireTool(t, "node")
	requireNodeModules(t, "examples/node", "@grpc/grpc-js")
	requireNodeModules(t, "examples/node", "@grpc/proto-loader")
	e := startVMRE(t, "--attach")
	api := e.apiAddr()
	env := "export " + e.line("export ")
	dir := filepath.Join(repoRoot, "examples", "node")

	// The env line, sourced by a shell as a person would paste it.
	script := fmt.Sprintf("%s && exec %s client.mjs attach --api %s --timeout 30", env, node, api)
	out, err := runCmd(t, 60*time.Second, dir, "sh", "-c", script)
	if err != nil {
		t.Fatalf("node client attach: %v\n%s", err, out)
	}
	if !strings.Contains(out, "snapshot: 0 runtime(s)") || !strings.Contains(out, "handshake ok:") || !strings.Contains(out, "attached: r1 ") {
		t.Fatalf("node client output:\n%s", out)
	}
	out, err = runCmd(t, 30*time.Second, dir, node, "client.mjs", "list", "--api", api)
	if err != nil || !strings.Contains(out, "1 runtime(s)") || !strings.Contains(out, `r1 "attached 127.0.0.1:`) || !strings.Contains(out, "state=attached") {
		t.Fatalf("node client list: %v\n%s", err, out)
	}
	// A handshake without the token is refused, and the client says so.
	engineAddr := strings.TrimPrefix(strings.Fields(env)[1], "VMRE_ENGINE_ADDR=")
	out, err = runCmd(t, 30*time.Second, dir, node, "client.mjs", "handshake", "--engine", engineAddr, "--vm-addr", "127.0.0.1:50009")
	if err == nil || !strings.Contains(out, "unauthenticated") {
		t.Fatalf("handshake without token: %v\n%s", err, out)
	}
}

// The Node client's --help names every command and exits 0; with no
// command it prints the same on stderr and exits 1.
func TestNodeClientHelp(t *testing.T) {
	t.Parallel()
	node := requireTool(t, "node")
	requireNodeModules(t, "examples/node", "@grpc/grpc-js")
	dir := filepath.Join(repoRoot, "examples", "node")
	for _, args := range [][]string{{"--help"}, {"-h"}, {"help"}, {"list", "--help"}} {
		out, err := runCmd(t, 30*time.Second, dir, node, append([]string{"client.mjs"}, args...)...)
		if err != nil || !strings.HasPrefix(out, "usage: node client.mjs") {
			t.Errorf("client.mjs %s: %v\n%s", strings.Join(args, " "), err, out)
		}
		for _, cmd := range []string{"handshake", "list", "watch", "attach"} {
			if !strings.Contains(out, "\n  "+cmd+" ") {
				t.Errorf("client.mjs %s does not list %s:\n%s", strings.Join(args, " "), cmd, out)
			}
		}
	}
	if out, err := runCmd(t, 30*time.Second, dir, node, "client.mjs"); err == nil || !strings.HasPrefix(out, "usage:") {
		t.Errorf("client.mjs without a command: %v, want exit 1 and the usage\n%s", err, out)
	}
}

// The Node client refuses numbers it could not carry: a protocol version
// above uint32 (protobufjs would wrap it and send another version) and a
// timeout above setTimeout's range (it would fire at once).
func TestNodeClientRefusesOutOfRange(t *testing.T) {
	t.Parallel()
	node := requireTool(t, "node")
	requireNodeModules(t, "examples/node", "@grpc/grpc-js")
	dir := filepath.Join(repoRoot, "examples", "node")
	for _, tt := range []struct {
		args []string
		want string
	}{
		{[]string{"handshake", "--engine", "127.0.0.1:1", "--vm-addr", "127.0.0.1:2", "--protocol-version", "4294967338"}, "--protocol-version must be an integer from 1 to 4294967295"},
		{[]string{"watch", "--api", "127.0.0.1:1", "--timeout", "3000000"}, "--timeout must be a number of seconds from 0 to 2147483"},
	} {
		out, err := runCmd(t, 30*time.Second, dir, node, append([]string{"client.mjs"}, tt.args...)...)
		if err == nil || !strings.Contains(out, tt.want) {
			t.Errorf("client.mjs %s: %v\n%s", strings.Join(tt.args, " "), err, out)
		}
	}
}

// browserTools returns node, the chromium binary and the directory for
// screenshots of a dashboard test, after checking (as requireTool does)
// that the tools are there.
func browserTools(t *testing.T) (node, chromium, shots string) {
	t.Helper()
	node = requireTool(t, "node")
	requireNodeModules(t, "web", "playwright-core")
	chromium = os.Getenv("VMRE_CHROMIUM")
	if chromium == "" {
		chromium = "/usr/bin/chromium"
	}
	requireFile(t, "chromium (apt-get install -y chromium)", chromium)
	shots = filepath.Join(t.TempDir(), "screenshots")
	if dir := os.Getenv("VMRE_SCREENSHOT_DIR"); dir != "" {
		shots = dir
	}
	return node, chromium, shots
}

// The dashboard in chromium against `vmre run` with the built-in example
// VM (see web/test/dashboard.e2e.mjs for what it checks).
func TestBrowserDashboard(t *testing.T) {
	t.Parallel()
	node, chromium, shots := browserTools(t)
	e := startVMRE(t)
	api := e.apiURL()
	token, _ := e.token()
	out, err := runCmd(t, 150*time.Second, filepath.Join(repoRoot, "web"), node, "test/dashboard.e2e.mjs",
		"--url", api+"/", "--token="+token, "--out", shots, "--chromium", chromium)
	if err != nil || !strings.Contains(out, "dashboard ok") {
		t.Fatalf("dashboard test: %v\n%s", err, out)
	}
	for _, name := range []string{"dashboard-running.png", "dashboard-stopped.png", "dashboard-narrow.png"} {
		if info, err := os.Stat(filepath.Join(shots, name)); err != nil || info.Size() < 10_000 {
			t.Fatalf("screenshot %s: %v", name, err)
		}
	}
	t.Logf("screenshots in %s", shots)
}
