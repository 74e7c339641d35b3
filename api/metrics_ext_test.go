package api_test

import (
	"context"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
	"github.com/vmre/vmre"
	"github.com/vmre/vmre/api"
	"github.com/vmre/vmre/engine"
	"github.com/vmre/vmre/server"
)

// scrape reads the API port's /metrics in the text format and returns each
// sample as `name{label="v",...}` (labels sorted by name) -> value.
func scrape(t *testing.T, h *harness) map[string]float64 {
	t.Helper()
	resp, err := http.Get(h.url + api.MetricsPath)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("GET /metrics: %s", resp.Status)
	}
	parser := expfmt.NewTextParser(model.UTF8Validation)
	families, err := parser.TextToMetricFamilies(resp.Body)
	if err != nil {
		t.Fatalf("parse /metrics: %v", err)
	}
	out := make(map[string]float64)
	for name, f := range families {
		for _, m := range f.GetMetric() {
			var labels []string
			for _, l := range m.GetLabel() {
				labels = append(labels, fmt.Sprintf("%s=%q", l.GetName(), l.GetValue()))
			}
			key := name + "{" + strings.Join(labels, ",") + "}"
			switch {
			case m.GetGauge() != nil:
				out[key] = m.GetGauge().GetValue()
			case m.GetCounter() != nil:
				out[key] = m.GetCounter().GetValue()
			case m.GetHistogram() != nil:
				out[name+"_count{"+strings.Join(labels, ",")+"}"] = float64(m.GetHistogram().GetSampleCount())
			}
		}
	}
	return out
}

// scrapeUntil scrapes until ok accepts the samples: the counters fed by the
// engine's change stream lag its state by one delivery. The bound is only
// there so that a missing sample fails the test instead of spinning.
func scrapeUntil(t *testing.T, h *harness, ok func(map[string]float64) bool) map[string]float64 {
	t.Helper()
	deadline := time.Now().Add(2 * time.Minute)
	for {
		s := scrape(t, h)
		if ok(s) {
			return s
		}
		if time.Now().After(deadline) {
			t.Fatalf("metrics never matched; last scrape: %v", s)
		}
		time.Sleep(10 * time.Millisecond) // a scrape rate, not a wait for an event
	}
}

func TestMetricsFollowARuntimesLife(t *testing.T) {
	t.Parallel()
	h := startEngine(t, engine.Config{History: 1}, nil)
	if _, err := h.engine.Launch(t.Context(), engine.Spec{Name: "vm-a", Path: "/opt/vm-a"}); err != nil {
		t.Fatal(err)
	}
	s := scrapeUntil(t, h, func(s map[string]float64) bool {
		return s[`vmre_handshake_duration_seconds_count{}`] == 1
	})
	for key, want := range map[string]float64{
		`vmre_runtime_info{attached="false",id="r1",name="vm-a",protocol_version="42"}`: 1,
		`vmre_runtime_state{id="r1",name="vm-a",state="running"}`:                       1,
		`vmre_runtime_state{id="r1",name="vm-a",state="exited"}`:                        0,
		`vmre_runtime_restarts_total{id="r1",name="vm-a"}`:                              0,
	} {
		if got, ok := s[key]; !ok || got != want {
			t.Errorf("%s = %v (present %v), want %v", key, got, ok, want)
		}
	}
	if s[`vmre_runtime_start_time_seconds{id="r1",name="vm-a"}`] <= 0 {
		t.Errorf("no start time: %v", s)
	}
	if _, ok := s[`go_goroutines{}`]; !ok {
		t.Error("no Go collector")
	}

	// A restart: one exit (the fake process ends by SIGTERM) and a second
	// handshake.
	if _, err := h.engine.Restart(t.Context(), "r1"); err != nil {
		t.Fatal(err)
	}
	s = scrapeUntil(t, h, func(s map[string]float64) bool {
		return s[`vmre_handshake_duration_seconds_count{}`] == 2
	})
	for key, want := range map[string]float64{
		`vmre_runtime_restarts_total{id="r1",name="vm-a"}`:              1,
		`vmre_runtime_exits_total{id="r1",name="vm-a",reason="signal"}`: 1,
		`vmre_runtime_state{id="r1",name="vm-a",state="running"}`:       1,
	} {
		if got := s[key]; got != want {
			t.Errorf("after restart: %s = %v, want %v", key, got, want)
		}
	}

	// Stopped, then pushed out of a one-runtime history by another: r1's
	// series go.
	if _, err := h.engine.Stop(t.Context(), "r1"); err != nil {
		t.Fatal(err)
	}
	s = scrapeUntil(t, h, func(s map[string]float64) bool {
		return s[`vmre_runtime_exits_total{id="r1",name="vm-a",reason="signal"}`] == 2
	})
	if s[`vmre_runtime_state{id="r1",name="vm-a",state="exited"}`] != 1 {
		t.Errorf("stopped runtime not exited: %v", s)
	}
	if _, err := h.engine.Launch(t.Context(), engine.Spec{Name: "vm-b", Path: "/opt/vm-b"}); err != nil {
		t.Fatal(err)
	}
	if _, err := h.engine.Stop(t.Context(), "r2"); err != nil {
		t.Fatal(err)
	}
	s = scrapeUntil(t, h, func(s map[string]float64) bool {
		return s[`vmre_runtime_state{id="r2",name="vm-b",state="exited"}`] == 1
	})
	for key := range s {
		if strings.Contains(key, `id="r1"`) {
			t.Errorf("evicted runtime still has a series: %s", key)
		}
	}

	// promtool, where installed, agrees that the exposition is well formed.
	if _, err := exec.LookPath("promtool"); err != nil {
		if os.Getenv("CI") != "" {
			t.Fatal("promtool not installed")
		}
		t.Skip("promtool not installed")
	}
	resp, err := http.Get(h.url + api.MetricsPath)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	cmd := exec.Command("promtool", "check", "metrics")
	cmd.Stdin = resp.Body
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("promtool check metrics: %v\n%s", err, out)
	}
}

// TestMetricsCountRefusedHandshakes: callers the attach endpoint refuses
// are counted by reason, and every reason has a series from the start.
func TestMetricsCountRefusedHandshakes(t *testing.T) {
	t.Parallel()
	h := start(t, nil)
	s := scrape(t, h)
	for _, reason := range server.RefusalReasons() {
		key := `vmre_handshake_refused_total{reason="` + reason.String() + `"}`
		if v, ok := s[key]; !ok || v != 0 {
			t.Errorf("before any call: %s = %v (present %v), want 0", key, v, ok)
		}
	}
	const secret = "attach-secret-0123456789"
	ep, err := h.engine.ServeAttach("", secret)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = ep.Close(context.Background()) })
	for _, token := range []string{"", "", "wrong-secret-0123456789"} {
		body := strings.NewReader(fmt.Sprintf(`{"protocolVersion":%d,"addr":"127.0.0.1:50001"}`, vmre.ProtocolVersion))
		req, err := http.NewRequestWithContext(t.Context(), http.MethodPost, "http://"+ep.Addr()+server.InitializeProcedure, body)
		if err != nil {
			t.Fatal(err)
		}
		req.Header.Set("Content-Type", "application/json")
		if token != "" {
			req.Header.Set(vmre.HandshakeTokenHeader, token)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		_ = resp.Body.Close()
		if resp.StatusCode != http.StatusUnauthorized {
			t.Fatalf("attach with token %q: %s, want 401", token, resp.Status)
		}
	}
	s = scrape(t, h)
	for key, want := range map[string]float64{
		`vmre_handshake_refused_total{reason="no_token"}`:     2,
		`vmre_handshake_refused_total{reason="bad_token"}`:    1,
		`vmre_handshake_refused_total{reason="foreign_peer"}`: 0,
	} {
		if got := s[key]; got != want {
			t.Errorf("%s = %v, want %v", key, got, want)
		}
	}
}
