package envpolicy_test

import (
	"errors"
	"os"
	"os/exec"
	"slices"
	"strings"
	"testing"

	"github.com/vmre/vmre"
	"github.com/vmre/vmre/internal/envpolicy"
)

var base = []string{
	"PATH=/usr/bin:/bin",
	"HOME=/home/op",
	"LC_ALL=C.UTF-8",
	"LC_TIME=en_GB.UTF-8",
	"AWS_SECRET_ACCESS_KEY=hunter2",
	"EDITOR=vi",
	vmre.HandshakeTokenKey + "=outer-engine-secret",
	vmre.EngineAddressKey + "=127.0.0.1:1111",
	vmre.AvalancheEngineAddressKey + "=127.0.0.1:2222",
	vmre.LuxEngineAddressKey + "=127.0.0.1:3333",
	"NOVALUE",
}

func TestEnviron(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		cfg  envpolicy.Config
		base []string // default: base
		want []string
	}{
		{
			name: "inherit",
			cfg:  envpolicy.Config{},
			want: []string{"PATH=/usr/bin:/bin", "HOME=/home/op", "LC_ALL=C.UTF-8", "LC_TIME=en_GB.UTF-8",
				"AWS_SECRET_ACCESS_KEY=hunter2", "EDITOR=vi"},
		},
		{
			name: "inherit with overrides",
			cfg:  envpolicy.Config{Set: []string{"EDITOR=nano", "NEW=1", "NEW=2", "EMPTY="}},
			want: []string{"PATH=/usr/bin:/bin", "HOME=/home/op", "LC_ALL=C.UTF-8", "LC_TIME=en_GB.UTF-8",
				"AWS_SECRET_ACCESS_KEY=hunter2", "EDITOR=nano", "NEW=2", "EMPTY="},
		},
		{
			name: "a key repeated in base counts once, with its last value",
			cfg:  envpolicy.Config{},
			base: append(slices.Clone(base), "HOME=/home/other", "PWD=/a", "PWD=/b"),
			want: []string{"PATH=/usr/bin:/bin", "LC_ALL=C.UTF-8", "LC_TIME=en_GB.UTF-8",
				"AWS_SECRET_ACCESS_KEY=hunter2", "EDITOR=vi", "HOME=/home/other", "PWD=/b"},
		},
		{
			name: "clean with the default allowlist",
			cfg:  envpolicy.Config{Mode: envpolicy.ModeClean},
			want: []string{"PATH=/usr/bin:/bin", "HOME=/home/op", "LC_ALL=C.UTF-8", "LC_TIME=en_GB.UTF-8"},
		},
		{
			name: "clean with an allowlist and explicit entries",
			cfg:  envpolicy.Config{Mode: envpolicy.ModeClean, Keep: []string{"PATH", "EDITOR"}, Set: []string{"GOMAXPROCS=2", "PATH=/opt/bin"}},
			want: []string{"EDITOR=vi", "GOMAXPROCS=2", "PATH=/opt/bin"},
		},
		{
			name: "clean keeping nothing",
			cfg:  envpolicy.Config{Mode: envpolicy.ModeClean, Keep: []string{}},
			want: []string{},
		},
		{
			name: "clean with a prefix",
			cfg:  envpolicy.Config{Mode: envpolicy.ModeClean, Keep: []string{"LC_*"}},
			want: []string{"LC_ALL=C.UTF-8", "LC_TIME=en_GB.UTF-8"},
		},
		{
			name: "handshake variables are never kept",
			cfg:  envpolicy.Config{Mode: envpolicy.ModeClean, Keep: []string{vmre.HandshakeTokenKey, "VMRE_*", "AVALANCHE_*"}},
			want: []string{},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			p, err := envpolicy.New(tt.cfg)
			if err != nil {
				t.Fatal(err)
			}
			from := base
			if tt.base != nil {
				from = tt.base
			}
			in := slices.Clone(from)
			got := p.Environ(in)
			if !slices.Equal(got, tt.want) {
				t.Fatalf("Environ =\n  %q\nwant\n  %q", got, tt.want)
			}
			if !slices.Equal(in, from) {
				t.Fatal("Environ modified its input")
			}
		})
	}
}

func TestNewInvalid(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		cfg  envpolicy.Config
	}{
		{"no equals sign", envpolicy.Config{Set: []string{"FOO"}}},
		{"empty key", envpolicy.Config{Set: []string{"=bar"}}},
		{"NUL in key", envpolicy.Config{Set: []string{"F\x00O=bar"}}},
		{"NUL in value", envpolicy.Config{Set: []string{"FOO=b\x00r"}}},
		{"reserved token", envpolicy.Config{Set: []string{vmre.HandshakeTokenKey + "=x"}}},
		{"reserved address", envpolicy.Config{Set: []string{vmre.AvalancheEngineAddressKey + "=127.0.0.1:1"}}},
		{"keep in inherit mode", envpolicy.Config{Keep: []string{"PATH"}}},
		{"empty keep name", envpolicy.Config{Mode: envpolicy.ModeClean, Keep: []string{""}}},
		{"keep name with equals", envpolicy.Config{Mode: envpolicy.ModeClean, Keep: []string{"A=B"}}},
		{"unknown mode", envpolicy.Config{Mode: 7}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			if _, err := envpolicy.New(tt.cfg); !errors.Is(err, vmre.ErrInvalidConfig) {
				t.Fatalf("New error = %v, want ErrInvalidConfig", err)
			}
		})
	}
}

func TestNewDoesNotRetainConfig(t *testing.T) {
	t.Parallel()
	cfg := envpolicy.Config{Mode: envpolicy.ModeClean, Keep: []string{"PATH"}, Set: []string{"A=1"}}
	p, err := envpolicy.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	cfg.Keep[0], cfg.Set[0] = "HOME", "A=2"
	if got := p.Environ([]string{"PATH=/bin", "HOME=/h"}); !slices.Equal(got, []string{"PATH=/bin", "A=1"}) {
		t.Fatalf("policy changed with its config: %q", got)
	}
}

func TestParseMode(t *testing.T) {
	t.Parallel()
	for in, want := range map[string]envpolicy.Mode{"": envpolicy.ModeInherit, "inherit": envpolicy.ModeInherit, "clean": envpolicy.ModeClean} {
		if got, err := envpolicy.ParseMode(in); err != nil || got != want {
			t.Errorf("ParseMode(%q) = %v, %v; want %v", in, got, err, want)
		}
	}
	for _, bad := range []string{"Clean", "none", "inherit,clean"} {
		if _, err := envpolicy.ParseMode(bad); !errors.Is(err, vmre.ErrInvalidConfig) {
			t.Errorf("ParseMode(%q) error = %v, want ErrInvalidConfig", bad, err)
		}
	}
	var m envpolicy.Mode
	if err := m.UnmarshalText([]byte("clean")); err != nil || m != envpolicy.ModeClean {
		t.Errorf("UnmarshalText(clean) = %v, %v", m, err)
	}
	if b, _ := m.MarshalText(); string(b) != "clean" {
		t.Errorf("MarshalText = %q", b)
	}
}

// TestCleanEnvironmentReachesChild runs a real child with a clean
// environment and checks what it sees.
func TestCleanEnvironmentReachesChild(t *testing.T) {
	t.Parallel()
	sh, err := exec.LookPath("sh")
	if err != nil {
		t.Skip("no sh")
	}
	p, err := envpolicy.New(envpolicy.Config{Mode: envpolicy.ModeClean, Keep: []string{"PATH"}, Set: []string{"PLUGIN_MODE=test"}})
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(sh, "-c", "env")
	cmd.Env = append(p.Environ(append(os.Environ(), "SECRET_FROM_ENGINE=x")), vmre.EngineAddressKey+"=127.0.0.1:9")
	out, err := cmd.Output()
	if err != nil {
		t.Fatal(err)
	}
	env := string(out)
	for _, want := range []string{"PATH=", "PLUGIN_MODE=test", vmre.EngineAddressKey + "=127.0.0.1:9"} {
		if !strings.Contains(env, want) {
			t.Errorf("child environment lacks %s:\n%s", want, env)
		}
	}
	for _, unwanted := range []string{"SECRET_FROM_ENGINE", "HOME="} {
		if strings.Contains(env, unwanted) {
			t.Errorf("child environment has %s:\n%s", unwanted, env)
		}
	}
}

func TestEqual(t *testing.T) {
	t.Parallel()
	mustNew := func(cfg envpolicy.Config) *envpolicy.Policy {
		p, err := envpolicy.New(cfg)
		if err != nil {
			t.Fatal(err)
		}
		return p
	}
	tests := []struct {
		name string
		a, b *envpolicy.Policy
		want bool
	}{
		{"both inherit", mustNew(envpolicy.Config{}), mustNew(envpolicy.Config{}), true},
		{"clean, default keep", mustNew(envpolicy.Config{Mode: envpolicy.ModeClean}), mustNew(envpolicy.Config{Mode: envpolicy.ModeClean, Keep: envpolicy.DefaultKeep()}), true},
		{"mode differs", mustNew(envpolicy.Config{}), mustNew(envpolicy.Config{Mode: envpolicy.ModeClean}), false},
		{"keep differs", mustNew(envpolicy.Config{Mode: envpolicy.ModeClean, Keep: []string{"PATH"}}), mustNew(envpolicy.Config{Mode: envpolicy.ModeClean, Keep: []string{"HOME"}}), false},
		{"set differs", mustNew(envpolicy.Config{Set: []string{"A=1"}}), mustNew(envpolicy.Config{Set: []string{"A=2"}}), false},
		{"set order differs", mustNew(envpolicy.Config{Set: []string{"A=1", "A=2"}}), mustNew(envpolicy.Config{Set: []string{"A=2", "A=1"}}), false},
		{"one nil", mustNew(envpolicy.Config{}), nil, false},
		{"both nil", nil, nil, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			if got := tt.a.Equal(tt.b); got != tt.want {
				t.Errorf("a.Equal(b) = %v, want %v", got, tt.want)
			}
			if got := tt.b.Equal(tt.a); got != tt.want {
				t.Errorf("b.Equal(a) = %v, want %v", got, tt.want)
			}
		})
	}
}
