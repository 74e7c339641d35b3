package api_test

import (
	"cmp"
	"compress/gzip"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
	"github.com/rs/zerolog"
	"github.com/vmre/vmre"
	"github.com/vmre/vmre/api"
	"github.com/vmre/vmre/engine"
	vmrev1 "github.com/vmre/vmre/gen/vmre/v1"
	"github.com/vmre/vmre/logsink"
	"github.com/vmre/vmre/server"
	"github.com/vmre/vmre/subprocess"
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

// wantSamples reports every key of want whose sample in s is missing or
// has another value.
func wantSamples(t *testing.T, when string, s map[string]float64, want map[string]float64) {
	t.Helper()
	for key, v := range want {
		if got, ok := s[key]; !ok || got != v {
			t.Errorf("%s: %s = %v (present %v), want %v", when, key, got, ok, v)
		}
	}
}

func TestMetricsFollowARuntimesLife(t *testing.T) {
	t.Parallel()
	h := startEngine(t, engine.Config{History: 1}, nil)
	if _, err := h.engine.Launch(t.Context(), engine.Spec{Name: "vm-a", Path: "/opt/vm-a"}); err != nil {
		t.Fatal(err)
	}
	out := h.launcher.output(0)
	for _, l := range []subprocess.Line{
		{Stream: subprocess.StreamStdout, Level: zerolog.InfoLevel},
		{Stream: subprocess.StreamStdout, Level: zerolog.InfoLevel},
		{Stream: subprocess.StreamStderr, Level: zerolog.ErrorLevel},
		{Stream: subprocess.StreamStderr, Level: zerolog.NoLevel},
	} {
		out(&l)
	}
	s := scrapeUntil(t, h, func(s map[string]float64) bool {
		return s[`vmre_handshake_duration_seconds_count{}`] == 1
	})
	wantSamples(t, "launched", s, map[string]float64{
		`vmre_runtime_info{attached="false",id="r1",name="vm-a",protocol_version="42"}`: 1,
		`vmre_runtime_restarts_total{id="r1",name="vm-a"}`:                              0,
		`vmre_health_probe_failures_total{id="r1",name="vm-a"}`:                         0,
		`vmre_output_lines_total{id="r1",level="info",name="vm-a",stream="stdout"}`:     2,
		`vmre_output_lines_total{id="r1",level="error",name="vm-a",stream="stderr"}`:    1,
		`vmre_output_lines_total{id="r1",level="none",name="vm-a",stream="stderr"}`:     1,
		`vmre_output_dropped_lines_total{id="r1",name="vm-a"}`:                          0,
		`vmre_stop_duration_seconds_count{}`:                                            0,
		`vmre_stop_forced_kills_total{}`:                                                0,
		`vmre_handshake_failures_total{reason="timeout"}`:                               0,
		`vmre_api_watchers{}`:  0,
		`vmre_api_followers{}`: 0,
	})
	// One series per state the engine has, 1 for the current one.
	for _, st := range engine.States() {
		want := 0.0
		if st == engine.StateRunning {
			want = 1
		}
		wantSamples(t, "launched", s, map[string]float64{`vmre_runtime_state{id="r1",name="vm-a",state="` + st.String() + `"}`: want})
	}
	if s[`vmre_runtime_start_time_seconds{id="r1",name="vm-a"}`] <= 0 {
		t.Errorf("no start time: %v", s)
	}
	if _, ok := s[`go_goroutines{}`]; !ok {
		t.Error("no Go collector")
	}

	// A restart: one stop, a second handshake.
	if _, err := h.engine.Restart(t.Context(), "r1"); err != nil {
		t.Fatal(err)
	}
	s = scrapeUntil(t, h, func(s map[string]float64) bool {
		// The collectors of one scrape run concurrently with the counting
		// watcher: wait for every counter the restart moves.
		return s[`vmre_handshake_duration_seconds_count{}`] == 2 && s[`vmre_stop_duration_seconds_count{}`] == 1 &&
			s[`vmre_runtime_exits_total{id="r1",name="vm-a",reason="stopped"}`] == 1
	})
	wantSamples(t, "restarted", s, map[string]float64{
		`vmre_runtime_restarts_total{id="r1",name="vm-a"}`:               1,
		`vmre_runtime_exits_total{id="r1",name="vm-a",reason="stopped"}`: 1,
		`vmre_runtime_state{id="r1",name="vm-a",state="running"}`:        1,
		`vmre_stop_duration_seconds_count{}`:                             1,
		`vmre_stop_forced_kills_total{}`:                                 0,
		// The counts span the runtime's launches.
		`vmre_output_lines_total{id="r1",level="info",name="vm-a",stream="stdout"}`: 2,
	})

	// Stopped, then pushed out of a one-runtime history by another: r1's
	// series go.
	if _, err := h.engine.Stop(t.Context(), "r1"); err != nil {
		t.Fatal(err)
	}
	s = scrapeUntil(t, h, func(s map[string]float64) bool {
		return s[`vmre_runtime_exits_total{id="r1",name="vm-a",reason="stopped"}`] == 2
	})
	wantSamples(t, "stopped", s, map[string]float64{`vmre_runtime_state{id="r1",name="vm-a",state="exited"}`: 1})
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
	promtoolCheck(t, h)
}

// TestMetricsFailedAttachedAndForced: a launch whose handshake timed out,
// an attached runtime, and a stop that had to kill.
func TestMetricsFailedAttachedAndForced(t *testing.T) {
	t.Parallel()
	h := start(t, nil)
	if _, err := h.engine.Launch(t.Context(), engine.Spec{Name: "mute", Path: pathHandshakeTimeout}); !errors.Is(err, vmre.ErrHandshakeTimeout) {
		t.Fatalf("launch without handshake: %v, want a timeout", err)
	}
	att, err := h.engine.Attach(42, "127.0.0.1:50001", "127.0.0.1:1")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := h.engine.Launch(t.Context(), engine.Spec{Name: "stubborn", Path: pathStubborn}); err != nil {
		t.Fatal(err)
	}
	if _, err := h.engine.Stop(t.Context(), "r3"); err != nil {
		t.Fatal(err)
	}
	s := scrapeUntil(t, h, func(s map[string]float64) bool {
		return s[`vmre_stop_forced_kills_total{}`] == 1 && s[`vmre_handshake_failures_total{reason="timeout"}`] == 1 &&
			s[`vmre_runtime_exits_total{id="r1",name="mute",reason="handshake"}`] == 1 &&
			s[`vmre_runtime_exits_total{id="r3",name="stubborn",reason="stopped"}`] == 1
	})
	wantSamples(t, "", s, map[string]float64{
		`vmre_runtime_state{id="r1",name="mute",state="failed"}`:                                               1,
		`vmre_runtime_exits_total{id="r1",name="mute",reason="handshake"}`:                                     1,
		`vmre_handshake_failures_total{reason="version_mismatch"}`:                                             0,
		`vmre_handshake_failures_total{reason="other"}`:                                                        0,
		`vmre_runtime_info{attached="true",id="` + att.ID + `",name="` + att.Name + `",protocol_version="42"}`: 1,
		`vmre_runtime_state{id="` + att.ID + `",name="` + att.Name + `",state="attached"}`:                     1,
		`vmre_runtime_exits_total{id="r3",name="stubborn",reason="stopped"}`:                                   1,
		`vmre_stop_duration_seconds_count{}`:                                                                   1,
	})
	if _, ok := s[`vmre_runtime_exits_total{id="`+att.ID+`",name="`+att.Name+`",reason="stopped"}`]; ok {
		t.Error("an attached runtime that runs has an exit")
	}
	promtoolCheck(t, h)
}

// TestMetricsStreamGauges: open watch and follow streams are counted
// while they last.
func TestMetricsStreamGauges(t *testing.T) {
	t.Parallel()
	h := start(t, nil)
	rt, err := h.engine.Launch(t.Context(), engine.Spec{Path: "/opt/vm"})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	c := h.client()
	watch, err := c.WatchRuntimes(ctx, &vmrev1.WatchRuntimesRequest{})
	if err != nil {
		t.Fatal(err)
	}
	tail, err := c.TailOutput(ctx, &vmrev1.TailOutputRequest{Id: rt.ID, Follow: true})
	if err != nil {
		t.Fatal(err)
	}
	// Each stream has begun once its first message arrived.
	if !watch.Receive() || !tail.Receive() {
		t.Fatalf("streams: %v, %v", watch.Err(), tail.Err())
	}
	scrapeUntil(t, h, func(s map[string]float64) bool {
		return s[`vmre_api_watchers{}`] == 1 && s[`vmre_api_followers{}`] == 1
	})
	cancel()
	_ = watch.Close()
	_ = tail.Close()
	scrapeUntil(t, h, func(s map[string]float64) bool {
		return s[`vmre_api_watchers{}`] == 0 && s[`vmre_api_followers{}`] == 0
	})
}

// promtoolCheck runs `promtool check metrics` on a scrape, where promtool
// is installed (CI installs it).
func promtoolCheck(t *testing.T, h *harness) {
	t.Helper()
	if _, err := exec.LookPath("promtool"); err != nil {
		if os.Getenv("CI") != "" {
			t.Fatal("promtool not installed")
		}
		t.Log("promtool not installed: exposition not checked")
		return
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

// TestMetricsExpositions: the text format and OpenMetrics, each plain or
// gzipped as the scraper asks, carry the same runtime series; a runtime
// name that is not UTF-8 still gives a scrape that parses.
func TestMetricsExpositions(t *testing.T) {
	t.Parallel()
	h := start(t, nil)
	for _, name := range []string{"vm-a", "vm-\xff"} {
		if _, err := h.engine.Launch(t.Context(), engine.Spec{Name: name, Path: "/opt/vm"}); err != nil {
			t.Fatal(err)
		}
	}
	const openMetrics = "application/openmetrics-text;version=1.0.0,application/openmetrics-text;version=0.0.1;q=0.75,text/plain;version=0.0.4;q=0.5,*/*;q=0.1"
	tests := []struct {
		name, accept, acceptEncoding string
		wantType, wantEncoding       string
	}{
		{name: "text", acceptEncoding: "identity", wantType: "text/plain; version=0.0.4"},
		{name: "text, gzip", acceptEncoding: "gzip", wantType: "text/plain; version=0.0.4", wantEncoding: "gzip"},
		{name: "openmetrics, gzip (Prometheus)", accept: openMetrics, acceptEncoding: "gzip", wantType: "application/openmetrics-text; version=1.0.0", wantEncoding: "gzip"},
		{name: "openmetrics", accept: openMetrics, wantType: "application/openmetrics-text; version=1.0.0"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			req, err := http.NewRequestWithContext(t.Context(), http.MethodGet, h.url+api.MetricsPath, nil)
			if err != nil {
				t.Fatal(err)
			}
			if tt.accept != "" {
				req.Header.Set("Accept", tt.accept)
			}
			// Set by hand, Accept-Encoding turns off the transport's own
			// gzip handling, so the body arrives as it was sent.
			req.Header.Set("Accept-Encoding", cmp.Or(tt.acceptEncoding, "identity"))
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			defer resp.Body.Close()
			if resp.StatusCode != http.StatusOK {
				t.Fatalf("GET /metrics: %s", resp.Status)
			}
			if got := resp.Header.Get("Content-Type"); !strings.HasPrefix(got, tt.wantType) {
				t.Errorf("Content-Type %q, want %q", got, tt.wantType)
			}
			if got := resp.Header.Get("Content-Encoding"); got != tt.wantEncoding {
				t.Errorf("Content-Encoding %q, want %q", got, tt.wantEncoding)
			}
			body := io.Reader(resp.Body)
			if tt.wantEncoding == "gzip" {
				zr, err := gzip.NewReader(resp.Body)
				if err != nil {
					t.Fatal(err)
				}
				body = zr
			}
			b, err := io.ReadAll(body)
			if err != nil {
				t.Fatal(err)
			}
			text := string(b)
			// OpenMetrics writes 1 as 1.0.
			for _, want := range []string{
				`vmre_runtime_state{id="r1",name="vm-a",state="running"} 1`,
				"vmre_runtime_state{id=\"r2\",name=\"vm-\uFFFD\",state=\"running\"} 1",
				"vmre_runtime_info{attached=\"false\",id=\"r2\",name=\"vm-\uFFFD\",protocol_version=\"42\"} 1",
				`vmre_handshake_refused_total{reason="no_token"} 0`,
			} {
				if !strings.Contains(text, "\n"+want) {
					t.Errorf("no line %s", want)
				}
			}
			if strings.HasPrefix(tt.wantType, "application/openmetrics-text") {
				if !strings.HasSuffix(text, "# EOF\n") {
					t.Error("OpenMetrics exposition does not end with # EOF")
				}
				return
			}
			parser := expfmt.NewTextParser(model.UTF8Validation)
			if _, err := parser.TextToMetricFamilies(strings.NewReader(text)); err != nil {
				t.Errorf("parse: %v", err)
			}
		})
	}
}

// TestMetricsNameFilter: name[] parameters limit a scrape to the families
// they name, and the answer varies by Accept.
func TestMetricsNameFilter(t *testing.T) {
	t.Parallel()
	h := start(t, nil)
	resp, err := http.Get(h.url + api.MetricsPath + "?name[]=go_info&name[]=vmre_api_calls&name[]=no_such_family")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("GET /metrics: %s", resp.Status)
	}
	if got := resp.Header.Values("Vary"); !slices.Contains(got, "Accept") {
		t.Errorf("Vary %q, want Accept among them", got)
	}
	parser := expfmt.NewTextParser(model.UTF8Validation)
	families, err := parser.TextToMetricFamilies(resp.Body)
	if err != nil {
		t.Fatalf("parse /metrics: %v", err)
	}
	var names []string
	for name := range families {
		names = append(names, name)
	}
	slices.Sort(names)
	if want := []string{"go_info", "vmre_api_calls"}; !slices.Equal(names, want) {
		t.Errorf("families %v, want %v", names, want)
	}
}

// TestMetricsConcurrentScrapes: scrapes at the same time each get every
// runtime's series whole: one scrape's families are not built into
// another's (the race detector watches the shared builder).
func TestMetricsConcurrentScrapes(t *testing.T) {
	t.Parallel()
	h := start(t, nil)
	const runtimes, scrapers, rounds = 3, 6, 5
	for i := range runtimes {
		if _, err := h.engine.Launch(t.Context(), engine.Spec{Name: fmt.Sprintf("vm-%d", i), Path: "/opt/vm"}); err != nil {
			t.Fatal(err)
		}
	}
	scrapeOnce := func() error {
		resp, err := http.Get(h.url + api.MetricsPath)
		if err != nil {
			return err
		}
		defer resp.Body.Close()
		parser := expfmt.NewTextParser(model.UTF8Validation)
		families, err := parser.TextToMetricFamilies(resp.Body)
		if err != nil {
			return fmt.Errorf("parse: %w", err)
		}
		if n := len(families["vmre_runtime_info"].GetMetric()); n != runtimes {
			return fmt.Errorf("%d vmre_runtime_info series, want %d", n, runtimes)
		}
		if n := len(families["vmre_runtime_state"].GetMetric()); n != runtimes*len(engine.States()) {
			return fmt.Errorf("%d vmre_runtime_state series, want %d", n, runtimes*len(engine.States()))
		}
		if families["go_goroutines"] == nil || families["process_cpu_seconds_total"] == nil {
			return errors.New("no go_goroutines or process_cpu_seconds_total")
		}
		return nil
	}
	errs := make(chan error, scrapers*rounds)
	for range scrapers {
		go func() {
			for range rounds {
				errs <- scrapeOnce()
			}
		}()
	}
	for range scrapers * rounds {
		if err := <-errs; err != nil {
			t.Error(err)
		}
	}
}

// TestMetricsLogLostBytes: with Config.LogLostBytes set to a log sink's,
// the bytes of log events its output did not take are a counter; without
// it the family is absent.
func TestMetricsLogLostBytes(t *testing.T) {
	t.Parallel()
	if _, ok := scrape(t, start(t, nil))[`vmre_log_lost_bytes_total{}`]; ok {
		t.Error("vmre_log_lost_bytes_total served without Config.LogLostBytes")
	}
	r, w, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	r.Close() // the log's reader is gone
	defer w.Close()
	sink := logsink.New(w, 0, 0)
	h := start(t, func(c *api.Config) { c.LogLostBytes = sink.LostBytes })
	wantSamples(t, "before", scrape(t, h), map[string]float64{`vmre_log_lost_bytes_total{}`: 0})
	event := []byte(`{"level":"warn","message":"lost"}` + "\n")
	if _, err := sink.WriteLevel(zerolog.WarnLevel, event); err == nil {
		t.Fatal("a warning written into a pipe without a reader: no error")
	}
	wantSamples(t, "after a lost warning", scrape(t, h), map[string]float64{`vmre_log_lost_bytes_total{}`: float64(len(event))})
	promtoolCheck(t, h)
}
