package main

import (
	"context"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"connectrpc.com/connect"
	vmrev1 "github.com/vmre/vmre/gen/vmre/v1"
	"github.com/vmre/vmre/gen/vmre/v1/vmrev1connect"
	"github.com/vmre/vmre/internal/h2raw"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
)

// TestRunServesDuringConnectionFlood runs `vmre run` with 256 descriptors
// (so its default connection cap is 128) and opens 400 idle HTTP/2
// connections (preface and SETTINGS, then nothing) to its API port. Idle
// connections are closed only after 10 minutes here, so only the cap can
// make room: health must still answer, within a generous factor of its
// unflooded latency, and a caller with the token must still list and
// restart the runtime, whose relaunch needs descriptors too.
func TestRunServesDuringConnectionFlood(t *testing.T) {
	const (
		nofile   = 256
		flood    = 400
		slowdown = 20 // bound on the median under the flood, times the unflooded p99
		token    = "flood-test-token-0123456789abcdef"
	)
	tokenFile := writeTokenFile(t, token)
	// sh's ulimit sets the hard limit too, so Go's start-up raise of the
	// soft limit keeps 256.
	cmd := exec.Command("/bin/sh", "-c", `ulimit -n 256 && exec "$0" "$@"`, os.Args[0],
		"run", "--listen", "127.0.0.1:0", "--log-format", "json", "--token-file", tokenFile, "--api-idle-timeout", "10m")
	p := startRunCmd(t, cmd)
	addr := p.waitFor(t, "api listening", "").Addr
	p.waitFor(t, "runtime running", "examplevm")
	url := "http://" + addr

	// Each call dials a connection of its own, as a probe does.
	healthOnce := func() time.Duration {
		var protocols http.Protocols
		protocols.SetUnencryptedHTTP2(true)
		tr := &http.Transport{Protocols: &protocols}
		defer tr.CloseIdleConnections()
		c := connect.NewClient[healthpb.HealthCheckRequest, healthpb.HealthCheckResponse](&http.Client{Transport: tr},
			url+"/grpc.health.v1.Health/Check", connect.WithGRPC())
		ctx, cancel := context.WithTimeout(t.Context(), 60*time.Second) // a bound for a hung call
		defer cancel()
		start := time.Now()
		if _, err := c.CallUnary(ctx, connect.NewRequest(&healthpb.HealthCheckRequest{})); err != nil {
			t.Fatalf("health after %v: %v", time.Since(start), err)
		}
		return time.Since(start)
	}
	latencies := func(n int) []time.Duration {
		var out []time.Duration
		for range n {
			out = append(out, healthOnce())
		}
		slices.Sort(out)
		return out
	}
	base := latencies(20)

	var conns []*h2raw.Conn
	for range flood {
		c, err := h2raw.Dial(addr, 65535, 16)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = c.Close() })
		conns = append(conns, c)
	}
	// Wait until the server has taken every connection (its SETTINGS
	// came) or closed it. Without a cap it stops taking them when its
	// descriptors run out: the bound ends the wait, and the calls below
	// show what that costs.
	bound := time.After(60 * time.Second)
	taken := 0
wait:
	for _, c := range conns {
		select {
		case <-c.Events():
			taken++
		case <-bound:
			break wait
		}
	}
	t.Logf("the server took or closed %d of %d idle connections", taken, flood)

	under := latencies(20)
	if median, baseP99 := under[len(under)/2], base[len(base)*99/100]; median > slowdown*baseP99 {
		t.Errorf("health median %v under the flood, over %d x its unflooded p99 %v", median, slowdown, baseP99)
	}
	client := tokenClient(t, url, token)
	ctx, cancel := context.WithTimeout(t.Context(), 60*time.Second) // a bound for a hung call
	defer cancel()
	list, err := client.ListRuntimes(ctx, &vmrev1.ListRuntimesRequest{})
	if err != nil || len(list.GetRuntimes()) != 1 {
		t.Fatalf("list under the flood: %v, %v", list, err)
	}
	rt, err := client.RestartRuntime(ctx, &vmrev1.RestartRuntimeRequest{Id: list.GetRuntimes()[0].GetId()})
	if err != nil {
		t.Fatalf("restart under the flood: %v", err)
	}
	if rt.GetRuntime().GetState() != vmrev1.RuntimeState_RUNTIME_STATE_RUNNING {
		t.Fatalf("restarted runtime is %v", rt.GetRuntime().GetState())
	}
	// The cap was what made room, not anything else.
	p.waitFor(t, "connection limit reached: closed the connection idle the longest", "")
	t.Logf("health p50/p99 unflooded %v/%v, under the flood %v/%v", base[len(base)/2], base[len(base)*99/100],
		under[len(under)/2], under[len(under)*99/100])
}

// writeTokenFile writes token to a file of its own in t's temporary
// directory, as --token-file reads it, and returns the file's path.
func writeTokenFile(t *testing.T, token string) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "token")
	if err := os.WriteFile(path, []byte(token+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

// tokenClient returns a RuntimeService client of the API at url speaking
// gRPC over cleartext HTTP/2 on connections of its own, closed when t
// ends, that sends token with every call.
func tokenClient(t *testing.T, url, token string) vmrev1connect.RuntimeServiceClient {
	var protocols http.Protocols
	protocols.SetUnencryptedHTTP2(true)
	tr := &http.Transport{Protocols: &protocols}
	t.Cleanup(tr.CloseIdleConnections)
	return vmrev1connect.NewRuntimeServiceClient(&http.Client{Transport: tr}, url, connect.WithGRPC(),
		connect.WithInterceptors(connect.UnaryInterceptorFunc(func(next connect.UnaryFunc) connect.UnaryFunc {
			return func(ctx context.Context, req connect.AnyRequest) (connect.AnyResponse, error) {
				req.Header().Set("Authorization", "Bearer "+token)
				return next(ctx, req)
			}
		})))
}
