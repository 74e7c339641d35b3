package deploy_test

import (
	"bufio"
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/vmre/vmre"
	"github.com/vmre/vmre/config"
)

const unitPath = "systemd/vmre.service"

// unit is a systemd unit file: section -> key -> values, in order.
type unit map[string]map[string][]string

func parseUnit(t *testing.T, data []byte) unit {
	t.Helper()
	u := unit{}
	section := ""
	s := bufio.NewScanner(bytes.NewReader(data))
	for n := 1; s.Scan(); n++ {
		line := strings.TrimSpace(s.Text())
		switch {
		case line == "" || strings.HasPrefix(line, "#") || strings.HasPrefix(line, ";"):
		case strings.HasPrefix(line, "[") && strings.HasSuffix(line, "]"):
			section = strings.Trim(line, "[]")
			u[section] = map[string][]string{}
		default:
			key, value, ok := strings.Cut(line, "=")
			if !ok || section == "" {
				t.Fatalf("%s:%d: %q is not key=value in a section", unitPath, n, line)
			}
			u[section][strings.TrimSpace(key)] = append(u[section][strings.TrimSpace(key)], strings.TrimSpace(value))
		}
	}
	return u
}

// one returns the only value of key in section.
func (u unit) one(t *testing.T, section, key string) string {
	t.Helper()
	v := u[section][key]
	if len(v) != 1 {
		t.Fatalf("[%s] %s: %q, want one value", section, key, v)
	}
	return v[0]
}

// seconds parses a systemd time span of the forms this unit uses: "20",
// "20s", "1min 30s" is not used.
func seconds(t *testing.T, span string) time.Duration {
	t.Helper()
	if n, err := strconv.Atoi(span); err == nil {
		return time.Duration(n) * time.Second
	}
	d, err := time.ParseDuration(span)
	if err != nil {
		t.Fatalf("time span %q: %v", span, err)
	}
	return d
}

func TestSystemdUnit(t *testing.T) {
	t.Parallel()
	data, err := os.ReadFile(unitPath)
	if err != nil {
		t.Fatal(err)
	}
	u := parseUnit(t, data)
	for _, kv := range [][3]string{
		{"Service", "Type", "notify"},        // vmre run sends READY=1 (cmd/vmre/notify.go)
		{"Service", "NotifyAccess", "main"},  // plugins inherit NOTIFY_SOCKET; only vmre speaks
		{"Service", "KillMode", "mixed"},     // SIGTERM to vmre only: it stops its plugins itself
		{"Service", "KillSignal", "SIGTERM"}, // what vmre run stops on
		{"Service", "Restart", "on-failure"},
		{"Service", "ExecReload", "/bin/kill -HUP $MAINPID"}, // vmre run --config reloads on SIGHUP
	} {
		if got := u.one(t, kv[0], kv[1]); got != kv[2] {
			t.Errorf("[%s] %s=%s, want %s", kv[0], kv[1], got, kv[2])
		}
	}
	if stop := seconds(t, u.one(t, "Service", "TimeoutStopSec")); stop <= stopBound {
		t.Errorf("TimeoutStopSec=%v: systemd would SIGKILL vmre within its stop bound %v", stop, stopBound)
	}
	if start := seconds(t, u.one(t, "Service", "TimeoutStartSec")); start <= vmre.DefaultHandshakeTimeout {
		t.Errorf("TimeoutStartSec=%v: READY=1 may come only after a %v handshake", start, vmre.DefaultHandshakeTimeout)
	}
	// vmre run pings at half the interval (cmd/vmre/notify.go): a short
	// one would kill a vmre that a loaded machine merely delayed.
	if wd := seconds(t, u.one(t, "Service", "WatchdogSec")); wd < 10*time.Second {
		t.Errorf("WatchdogSec=%v, want at least 10s", wd)
	}
	// Exit status 2 is a usage error or a bad config file: a restart
	// cannot fix it.
	if prevent := strings.Fields(u.one(t, "Service", "RestartPreventExitStatus")); !slices.Contains(prevent, "2") {
		t.Errorf("RestartPreventExitStatus=%v lacks 2", prevent)
	}

	exec := strings.Fields(u.one(t, "Service", "ExecStart"))
	if filepath.Base(exec[0]) != "vmre" {
		t.Fatalf("ExecStart runs %s", exec[0])
	}
	args := exec[1:]
	checkRunFlags(t, args)
	if !hasFlag(args, "exit-on-failure") {
		t.Error("ExecStart lacks --exit-on-failure: a runtime that failed for good would never restart vmre")
	}
	// The config file the unit names is the one shipped beside it.
	file, ok := flagValue(args, "config")
	if !ok {
		t.Fatal("ExecStart has no --config")
	}
	shipped := filepath.Join("systemd", filepath.Base(file))
	if _, err := config.Load(shipped); err != nil {
		t.Errorf("the config file --config names: %v", err)
	}
}

// TestSystemdAnalyzeVerify runs systemd's own checker on the unit, with
// ExecStart pointed at a real vmre binary (verify refuses a command that
// does not exist). systemd-analyze reports bad keys and values as
// warnings with exit status 0, so any output fails the test.
func TestSystemdAnalyzeVerify(t *testing.T) {
	t.Parallel()
	analyze, err := exec.LookPath("systemd-analyze")
	if err != nil {
		t.Skip("systemd-analyze is not installed (Debian: apt-get install systemd); the unit is not verified")
	}
	bin, err := vmreBinary()
	if err != nil {
		t.Fatal(err)
	}
	data, err := os.ReadFile(unitPath)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Contains(data, []byte("ExecStart=/usr/local/bin/vmre ")) {
		t.Fatal("ExecStart does not run /usr/local/bin/vmre")
	}
	path := filepath.Join(t.TempDir(), "vmre.service")
	if err := os.WriteFile(path, bytes.ReplaceAll(data, []byte("/usr/local/bin/vmre"), []byte(bin)), 0o644); err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command(analyze, "verify", path).CombinedOutput()
	if err != nil || len(bytes.TrimSpace(out)) > 0 {
		t.Fatalf("systemd-analyze verify: %v\n%s", err, out)
	}
}
