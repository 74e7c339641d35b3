package config_test

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"github.com/rs/zerolog"
	"github.com/vmre/vmre"
	"github.com/vmre/vmre/config"
	"github.com/vmre/vmre/engine"
	"github.com/vmre/vmre/examples/examplevm"
	"github.com/vmre/vmre/subprocess"
	"go.uber.org/goleak"
)

// childArg, as the test binary's first argument, makes it the example VM:
// the runtimes of these tests are real plugin processes.
const childArg = "config-test-example-vm"

func TestMain(m *testing.M) {
	if len(os.Args) > 1 && os.Args[1] == childArg {
		if dump := os.Getenv("CONFIG_TEST_DUMP"); dump != "" {
			if err := os.WriteFile(dump, []byte(os.Getenv("CONFIG_TEST_VALUE")), 0o600); err != nil {
				panic(err)
			}
		}
		ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
		err := examplevm.Run(ctx, zerolog.New(os.Stdout), examplevm.Config{})
		stop()
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(1)
		}
		os.Exit(0)
	}
	// Children built with -race would sleep 1 s at exit and slow every stop.
	if err := os.Setenv("GORACE", strings.TrimSpace(os.Getenv("GORACE")+" atexit_sleep_ms=0")); err != nil {
		panic(err)
	}
	// The spawner and the watchdog live as long as the process, by design.
	goleak.VerifyTestMain(m, goleak.IgnoreAnyFunction(subprocess.SpawnerFunc), goleak.IgnoreAnyFunction(subprocess.WatchdogFunc))
}

// runtimeYAML is one runtime entry that runs the example VM; extra is
// added to its args, so changing it changes the runtime.
func runtimeYAML(name string, extra ...string) string {
	args := []string{childArg}
	args = append(args, extra...)
	return fmt.Sprintf("  - name: %s\n    path: %q\n    args: [%s]\n    restart: {policy: never}\n",
		name, os.Args[0], `"`+strings.Join(args, `", "`)+`"`)
}

func newEngine(t *testing.T) *engine.Engine {
	t.Helper()
	log := zerolog.New(zerolog.NewTestWriter(t))
	eng, err := engine.New(engine.Config{
		Launcher: engine.NewSubprocessLauncher(subprocess.Config{Log: log}, nil),
		Log:      log,
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { eng.Close(context.WithoutCancel(t.Context())) })
	return eng
}

// running returns the engine's running runtimes by name.
func running(eng *engine.Engine) map[string]engine.Runtime {
	out := make(map[string]engine.Runtime)
	for _, rt := range eng.List() {
		if rt.State == engine.StateRunning {
			out[rt.Name] = rt
		}
	}
	return out
}

func TestRunnerReload(t *testing.T) {
	t.Parallel()
	path := filepath.Join(t.TempDir(), "vmre.yaml")
	write := func(body string) {
		t.Helper()
		if err := os.WriteFile(path, []byte("runtimes:\n"+body), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	write(runtimeYAML("keep") + runtimeYAML("change") + runtimeYAML("remove"))
	file, err := config.Load(path)
	if err != nil {
		t.Fatal(err)
	}
	eng := newEngine(t)
	r := config.NewRunner(eng, file, zerolog.New(zerolog.NewTestWriter(t)))
	r.Start(t.Context())
	before := running(eng)
	if len(before) != 3 {
		t.Fatalf("running after Start: %v, want keep, change, remove", before)
	}

	write(runtimeYAML("keep") + runtimeYAML("change", "--changed") + runtimeYAML("add"))
	plan, err := r.Reload(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	if got := fmt.Sprint(names(plan.Start), plan.Stop, names(plan.Restart), plan.Keep); got != "[add] [remove] [change] [keep]" {
		t.Errorf("plan %s, want [add] [remove] [change] [keep]", got)
	}
	after := running(eng)
	if len(after) != 3 || after["add"].ID == "" || after["change"].ID == "" || after["keep"].ID == "" {
		t.Fatalf("running after reload: %v, want keep, change, add", after)
	}
	if k0, k1 := before["keep"], after["keep"]; k0.ID != k1.ID || k0.Pid != k1.Pid || k1.Restarts != 0 {
		t.Errorf("keep was touched: %s pid %d -> %s pid %d", k0.ID, k0.Pid, k1.ID, k1.Pid)
	}
	if c0, c1 := before["change"], after["change"]; c0.ID == c1.ID || c0.Pid == c1.Pid || !strings.Contains(strings.Join(c1.Command, " "), "--changed") {
		t.Errorf("change was not relaunched with its new args: %v -> %v", c0.Command, c1.Command)
	}
	for _, old := range []engine.Runtime{before["change"], before["remove"]} {
		rt, _, err := eng.Get(old.ID)
		if err != nil || rt.State != engine.StateExited {
			t.Errorf("%s (%s) after reload: %v, %v; want exited", old.Name, old.ID, rt.State, err)
		}
	}
	if id, _ := r.ID("change"); id != after["change"].ID {
		t.Errorf("runner's id for change %q, want %q", id, after["change"].ID)
	}

	// A bad file is refused and nothing moves.
	write(runtimeYAML("keep") + "  - name: broken\n    path: /bin/true\n    restart: {policy: sometimes}\n")
	if _, err := r.Reload(t.Context()); !errors.Is(err, vmre.ErrInvalidConfig) ||
		!strings.Contains(err.Error(), `runtimes[1].restart.policy: "sometimes" is not one of never, on-failure, always`) {
		t.Fatalf("reload of a bad file: %v", err)
	}
	if err := os.Remove(path); err != nil {
		t.Fatal(err)
	}
	if _, err := r.Reload(t.Context()); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("reload of a removed file: %v, want %v", err, os.ErrNotExist)
	}
	final := running(eng)
	for name, rt := range after {
		if got := final[name]; got.ID != rt.ID || got.Pid != rt.Pid {
			t.Errorf("%s changed after refused reloads: %s pid %d -> %s pid %d", name, rt.ID, rt.Pid, got.ID, got.Pid)
		}
	}
	if len(final) != len(after) {
		t.Errorf("running after refused reloads: %v, want %v", final, after)
	}
}

// TestRunnerAppliesLaunchSettings: each runtime is launched with its own
// settings from the file: its environment reaches its process, its log
// format is how its output is read, and its protocol versions are the ones
// its handshake is checked against.
func TestRunnerAppliesLaunchSettings(t *testing.T) {
	t.Parallel()
	dump := filepath.Join(t.TempDir(), "value")
	body := runtimeYAML("env") + fmt.Sprintf("    env: {CONFIG_TEST_DUMP: %q, CONFIG_TEST_VALUE: from-the-file}\n", dump) +
		"    log: {format: raw}\n" + runtimeYAML("auto") +
		runtimeYAML("versions") + "    protocol_versions: [41, 43]\n"
	f, err := config.Parse(filepath.Join(t.TempDir(), "vmre.yaml"), []byte("runtimes:\n"+body))
	if err != nil {
		t.Fatal(err)
	}
	eng := newEngine(t)
	config.NewRunner(eng, f, zerolog.New(zerolog.NewTestWriter(t))).Start(t.Context())
	if b, err := os.ReadFile(dump); err != nil || string(b) != "from-the-file" {
		t.Errorf("the plugin saw CONFIG_TEST_VALUE %q (%v), want the file's", b, err)
	}
	got := map[string]engine.Runtime{}
	for _, rt := range eng.List() {
		got[rt.Name] = rt
	}
	if got["env"].State != engine.StateRunning {
		t.Errorf("env: %v (%s), want running", got["env"].State, got["env"].LastError)
	}
	// The example VM logs JSON: read as such by default, as text under raw.
	for name, want := range map[string]subprocess.LogFormat{"env": subprocess.LogRaw, "auto": subprocess.LogJSON} {
		if l := firstLine(t, eng, got[name].ID); l.Format != want {
			t.Errorf("%s: first line %q read as %v, want %v", name, l.Text, l.Format, want)
		}
	}
	if rt := got["versions"]; rt.State != engine.StateFailed || !strings.Contains(rt.LastError, "protocol version mismatch engine: 41,43") {
		t.Errorf("versions: %v (%s), want failed on a mismatch with 41,43", rt.State, rt.LastError)
	}
}

// firstLine returns the first output line of runtime id, waiting for it.
func firstLine(t *testing.T, eng *engine.Engine, id string) subprocess.Line {
	t.Helper()
	lines, f, err := eng.TailOutput(id, 1, true, engine.OutputFilter{})
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	for len(lines) == 0 {
		if lines, _, err = f.Next(t.Context()); err != nil {
			t.Fatal(err)
		}
	}
	return lines[0]
}
