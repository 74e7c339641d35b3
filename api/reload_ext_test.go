package api_test

import (
	"context"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"connectrpc.com/connect"
	"github.com/rs/zerolog"
	"github.com/vmre/vmre/api"
	"github.com/vmre/vmre/config"
	vmrev1 "github.com/vmre/vmre/gen/vmre/v1"
)

// lateRunner is a Reloader whose Runner is made after the harness's engine.
type lateRunner struct{ r *config.Runner }

func (l *lateRunner) Reload(ctx context.Context) (config.Plan, error) { return l.r.Reload(ctx) }

func TestReloadConfig(t *testing.T) {
	t.Parallel()
	path := filepath.Join(t.TempDir(), "vmre.yaml")
	write := func(body string) {
		t.Helper()
		if err := os.WriteFile(path, []byte(body), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	write("runtimes:\n  - {name: a, path: /bin/a}\n  - {name: b, path: /bin/b}\n")
	file, err := config.Load(path)
	if err != nil {
		t.Fatal(err)
	}
	late := &lateRunner{}
	h := start(t, func(c *api.Config) { c.Reloader = late })
	late.r = config.NewRunner(h.engine, file, zerolog.New(zerolog.NewTestWriter(t)))
	late.r.Start(t.Context())

	write("runtimes:\n  - {name: a, path: /bin/a}\n  - {name: b, path: /bin/b, args: [x]}\n  - {name: c, path: /bin/c}\n")
	if _, err := h.client().ReloadConfig(t.Context(), &vmrev1.ReloadConfigRequest{}); connect.CodeOf(err) != connect.CodeUnauthenticated {
		t.Fatalf("reload without token: %v, want unauthenticated", err)
	}
	if n := len(h.engine.List()); n != 2 {
		t.Fatalf("a refused reload changed the engine: %d runtimes", n)
	}
	resp, err := h.client(withBearer(testToken)).ReloadConfig(t.Context(), &vmrev1.ReloadConfigRequest{})
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(resp.GetStarted(), []string{"c"}) || !slices.Equal(resp.GetRestarted(), []string{"b"}) ||
		!slices.Equal(resp.GetUnchanged(), []string{"a"}) || len(resp.GetStopped()) != 0 {
		t.Errorf("reload answered %v", resp)
	}

	write("runtimes:\n  - {name: a, path: /bin/a, restart: {policy: sometimes}}\n")
	before := h.engine.List()
	_, err = h.client(withBearer(testToken)).ReloadConfig(t.Context(), &vmrev1.ReloadConfigRequest{})
	if connect.CodeOf(err) != connect.CodeInvalidArgument ||
		!strings.Contains(err.Error(), `reload refused, the running runtimes are unchanged`) ||
		!strings.Contains(err.Error(), path+`: runtimes[0].restart.policy: "sometimes" is not one of never, on-failure, always`) {
		t.Fatalf("reload of a bad file: %v", err)
	}
	if after := h.engine.List(); len(after) != len(before) {
		t.Errorf("a bad file changed the engine: %d runtimes, then %d", len(before), len(after))
	}
}

func TestReloadConfigWithoutFile(t *testing.T) {
	t.Parallel()
	h := start(t, nil)
	_, err := h.client(withBearer(testToken)).ReloadConfig(t.Context(), &vmrev1.ReloadConfigRequest{})
	if connect.CodeOf(err) != connect.CodeFailedPrecondition || !strings.Contains(err.Error(), "--config") {
		t.Fatalf("reload without a file: %v, want failed_precondition naming --config", err)
	}
}
