package main

import (
	"os/exec"
	"slices"
	"strings"
	"testing"
)

// TestDepsLeaveOutClientGolang: the command links none of
// prometheus/client_golang and procfs, whose package init (the default
// registry's collectors, procfs's regular expressions, expvar) every
// `vmre` start would pay; /metrics is written with client_model and
// common/expfmt alone.
func TestDepsLeaveOutClientGolang(t *testing.T) {
	t.Parallel()
	goTool, err := exec.LookPath("go")
	if err != nil {
		t.Fatalf("go tool: %v", err)
	}
	out, err := exec.CommandContext(t.Context(), goTool, "list", "-deps", ".").Output()
	if err != nil {
		t.Fatalf("go list -deps: %v", err)
	}
	deps := strings.Fields(string(out))
	if !slices.Contains(deps, "github.com/prometheus/common/expfmt") {
		t.Fatalf("go list -deps does not list common/expfmt: %v", deps)
	}
	for _, dep := range deps {
		if strings.HasPrefix(dep, "github.com/prometheus/client_golang") || strings.HasPrefix(dep, "github.com/prometheus/procfs") || dep == "expvar" {
			t.Errorf("vmre links %s", dep)
		}
	}
}
