//go:build unix

package main

import (
	"context"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
)

// TestRunNotifiesServiceManager runs `vmre run` as a real process under a
// NOTIFY_SOCKET the test listens on, as systemd does for a Type=notify
// unit, and checks that READY=1 comes once the API port and the runtime
// serve, and STOPPING=1 when SIGTERM begins the shutdown.
func TestRunNotifiesServiceManager(t *testing.T) {
	path, msgs := listenNotify(t)
	next := func(want string) string {
		t.Helper()
		select {
		case m := <-msgs:
			if !strings.HasPrefix(m, want+"\n") && m != want {
				t.Fatalf("notification %q, want %s first", m, want)
			}
			return m
		case <-time.After(60 * time.Second): // a bound for a hung test, not a timing assertion
			t.Fatalf("no %s notification", want)
			return ""
		}
	}

	t.Setenv("NOTIFY_SOCKET", path) // the child inherits it
	p := startRun(t)
	ready := next("READY=1")
	addr := p.waitFor(t, "api listening", "").Addr
	if !strings.Contains(ready, "STATUS=api on "+addr) {
		t.Errorf("READY notification %q does not name the API address %s", ready, addr)
	}
	// At READY=1 the API answers and the runtime it launched is up.
	gc, err := grpc.NewClient(addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer gc.Close()
	ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
	defer cancel()
	for _, svc := range []string{"", "examplevm"} {
		resp, err := healthpb.NewHealthClient(gc).Check(ctx, &healthpb.HealthCheckRequest{Service: svc})
		if err != nil || resp.GetStatus() != healthpb.HealthCheckResponse_SERVING {
			t.Fatalf("at READY=1, Check(%q) = %v, %v", svc, resp.GetStatus(), err)
		}
	}

	p.signal(t, syscall.SIGTERM)
	next("STOPPING=1")
	if code := p.exitCode(t); code != exitOK {
		t.Fatalf("exit code %d after SIGTERM; log:\n%s", code, p.log.String())
	}
	select {
	case m := <-msgs:
		t.Errorf("notification %q after STOPPING=1", m)
	default:
	}
}

// listenNotify listens on a unix datagram socket as systemd does for a
// Type=notify unit and returns its path (for NOTIFY_SOCKET) and the
// notifications that arrive on it.
func listenNotify(t *testing.T) (string, <-chan string) {
	t.Helper()
	// Not in t.TempDir(): a unix socket path must fit in 108 bytes.
	dir, err := os.MkdirTemp("", "vmre-notify")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = os.RemoveAll(dir) })
	path := filepath.Join(dir, "notify")
	conn, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: path, Net: "unixgram"})
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	t.Cleanup(func() {
		close(done) // a reader blocked on a full msgs returns
		_ = conn.Close()
	})
	msgs := make(chan string, 16)
	go func() {
		buf := make([]byte, 4096)
		for {
			n, err := conn.Read(buf)
			if err != nil {
				return
			}
			select {
			case msgs <- string(buf[:n]):
			case <-done:
				return
			}
		}
	}()
	return path, msgs
}

// TestRunPingsSystemdWatchdog: under WatchdogSec (WATCHDOG_USEC), vmre run
// sends WATCHDOG=1 again and again, and its plugins do not inherit the
// watchdog's variables.
func TestRunPingsSystemdWatchdog(t *testing.T) {
	t.Parallel()
	path, msgs := listenNotify(t)
	dump := filepath.Join(t.TempDir(), "env")
	plugin := writeScript(t, "/usr/bin/env > \"$DUMP\"\nexec \"$VMRE_BIN\" "+exampleVMCommand+"\n")
	cmd := exec.Command(os.Args[0], "run", "--listen", "127.0.0.1:0", "--log-format", "json", "--", plugin)
	cmd.Env = append(os.Environ(), "NOTIFY_SOCKET="+path, "WATCHDOG_USEC=200000", "DUMP="+dump, "VMRE_BIN="+os.Args[0])
	p := startRunCmd(t, cmd)
	p.waitFor(t, "runtime running", "")
	for pings := 0; pings < 3; {
		select {
		case m := <-msgs:
			if m == "WATCHDOG=1" {
				pings++
			}
		case <-time.After(60 * time.Second): // a bound for a hung test, not a timing assertion
			t.Fatalf("%d WATCHDOG=1 notifications, want 3; log:\n%s", pings, p.log.String())
		}
	}
	env, err := os.ReadFile(dump)
	if err != nil {
		t.Fatal(err)
	}
	for line := range strings.Lines(string(env)) {
		if strings.HasPrefix(line, "WATCHDOG_") {
			t.Errorf("the plugin inherited %s", strings.TrimSpace(line))
		}
	}
	p.signal(t, syscall.SIGTERM)
	if code := p.exitCode(t); code != exitOK {
		t.Fatalf("exit code %d after SIGTERM; log:\n%s", code, p.log.String())
	}
}
