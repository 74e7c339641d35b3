package config_test

import (
	"slices"
	"testing"

	"github.com/vmre/vmre/config"
)

func parse(t *testing.T, body string) *config.File {
	t.Helper()
	f, err := config.Parse("/etc/vmre/vmre.yaml", []byte(body))
	if err != nil {
		t.Fatal(err)
	}
	return f
}

func names(rts []config.Runtime) []string {
	var out []string
	for _, rt := range rts {
		out = append(out, rt.Name)
	}
	return out
}

func TestDiff(t *testing.T) {
	t.Parallel()
	base := `runtimes:
  - {name: a, path: /bin/a}
  - {name: b, path: /bin/b, handshake_timeout: 5s}
  - {name: c, path: /bin/c}
`
	tests := []struct {
		name                       string
		old                        string // "" means no file before
		next                       string
		start, stop, restart, keep []string
	}{
		{name: "first start", next: base, start: []string{"a", "b", "c"}},
		{name: "same file", old: base, next: base, keep: []string{"a", "b", "c"}},
		{name: "reordered", old: base, next: `runtimes:
  - {name: c, path: /bin/c}
  - {name: b, path: /bin/b, handshake_timeout: 5s}
  - {name: a, path: /bin/a}
`, keep: []string{"c", "b", "a"}},
		{name: "same value spelled differently", old: base, next: `runtimes:
  - {name: a, path: /bin/a, vm_shutdown: true, restart: {policy: on-failure}}
  - {name: b, path: /bin/b, handshake_timeout: 5000ms}
  - {name: c, path: /bin/c, log: {format: auto}}
`, keep: []string{"a", "b", "c"}},
		{name: "add remove change", old: base, next: `runtimes:
  - {name: a, path: /bin/a, args: [--x]}
  - {name: b, path: /bin/b, handshake_timeout: 5s}
  - {name: d, path: /bin/d}
`, start: []string{"d"}, stop: []string{"c"}, restart: []string{"a"}, keep: []string{"b"}},
		{name: "changed restart policy", old: base, next: `runtimes:
  - {name: a, path: /bin/a, restart: {policy: always}}
  - {name: b, path: /bin/b, handshake_timeout: 5s}
  - {name: c, path: /bin/c, health: {interval: 10s}}
`, restart: []string{"a", "c"}, keep: []string{"b"}},
		{name: "changed env", old: base, next: `runtimes:
  - {name: a, path: /bin/a, env: {X: "1"}}
  - {name: b, path: /bin/b, handshake_timeout: 6s}
  - {name: c, path: /bin/c}
`, restart: []string{"a", "b"}, keep: []string{"c"}},
		{name: "all removed", old: base, next: "runtimes: []\n", stop: []string{"a", "b", "c"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			var old *config.File
			if tt.old != "" {
				old = parse(t, tt.old)
			}
			p := config.Diff(old, parse(t, tt.next))
			if got := names(p.Start); !slices.Equal(got, tt.start) {
				t.Errorf("start %q, want %q", got, tt.start)
			}
			if !slices.Equal(p.Stop, tt.stop) {
				t.Errorf("stop %q, want %q", p.Stop, tt.stop)
			}
			if got := names(p.Restart); !slices.Equal(got, tt.restart) {
				t.Errorf("restart %q, want %q", got, tt.restart)
			}
			if !slices.Equal(p.Keep, tt.keep) {
				t.Errorf("keep %q, want %q", p.Keep, tt.keep)
			}
			if p.Empty() != (len(tt.start)+len(tt.stop)+len(tt.restart) == 0) {
				t.Errorf("Empty() = %v", p.Empty())
			}
		})
	}
}
