package deploy_test

import (
	"bytes"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/vmre/vmre/server"
	"github.com/vmre/vmre/subprocess"
)

// stopBound is how long `vmre run` with its default flags may take to exit
// after SIGTERM: every plugin's stop sequence (the VM's Shutdown call,
// SIGTERM, SIGKILL: --vm-shutdown is on by default), in parallel, then the
// API port's own shutdown. An orchestrator must wait longer than this
// before it kills vmre.
var stopBound = (&subprocess.Config{VMShutdown: true}).StopBound() + server.ShutdownTimeout

func TestStopBound(t *testing.T) {
	t.Parallel()
	// docs/deploy.md states this arithmetic: 5 s + 5 s + 2 s + 2 s.
	if stopBound != 14*time.Second {
		t.Fatalf("vmre's stop bound is %v; docs/deploy.md and the files here say 14 s", stopBound)
	}
}

// vmreBinary builds the vmre command once per test run.
var vmreBinary = sync.OnceValues(func() (string, error) {
	dir, err := os.MkdirTemp("", "vmre-deploy-test")
	if err != nil {
		return "", err
	}
	bin := filepath.Join(dir, "vmre")
	// Built in the root module, with its own go.mod, as users build it.
	cmd := exec.Command("go", "build", "-o", bin, "./cmd/vmre")
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
	cmd.Dir = ".."
	out, err := cmd.CombinedOutput()
	if err != nil {
		return "", errors.New("go build vmre: " + err.Error() + "\n" + string(out))
	}
	return bin, nil
})

func TestMain(m *testing.M) {
	code := m.Run()
	if bin, err := vmreBinary(); err == nil {
		_ = os.RemoveAll(filepath.Dir(bin))
	}
	os.Exit(code)
}

// checkRunFlags fails the test unless vmre accepts args (starting with
// "run") as they are; see checkArgs.
func checkRunFlags(t *testing.T, args []string) {
	t.Helper()
	if len(args) == 0 || args[0] != "run" {
		t.Fatalf("vmre arguments %q do not start with run", args)
	}
	checkArgs(t, args)
}

// checkArgs fails the test unless vmre accepts args (a command and its
// flags) as they are: it runs `vmre ARGS -h`, which parses every flag,
// value included, and exits 0 with the usage, or 2 naming what it refused.
func checkArgs(t *testing.T, args []string) {
	t.Helper()
	bin, err := vmreBinary()
	if err != nil {
		t.Fatal(err)
	}
	var stderr bytes.Buffer
	cmd := exec.Command(bin, append(append([]string{}, args...), "-h")...)
	cmd.Stderr = &stderr
	if err := cmd.Run(); err != nil {
		first, _, _ := strings.Cut(stderr.String(), "\n")
		t.Errorf("vmre refuses %q: %v: %s", args, err, first)
	}
}

// flagValue returns the value of --name in args ("--name=v" or "--name v").
func flagValue(args []string, name string) (string, bool) {
	for i, a := range args {
		a = "-" + strings.TrimLeft(a, "-")
		switch {
		case a == "-"+name && i+1 < len(args):
			return args[i+1], true
		case strings.HasPrefix(a, "-"+name+"="):
			return strings.TrimPrefix(a, "-"+name+"="), true
		}
	}
	return "", false
}

func hasFlag(args []string, name string) bool {
	for _, a := range args {
		a = "-" + strings.TrimLeft(a, "-")
		if a == "-"+name || strings.HasPrefix(a, "-"+name+"=") {
			return true
		}
	}
	return false
}
