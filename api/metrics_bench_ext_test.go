package api_test

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"sync"
	"sync/atomic"
	"testing"
	"testing/fstest"
	"time"

	"github.com/rs/zerolog"
	"github.com/vmre/vmre"
	"github.com/vmre/vmre/api"
	"github.com/vmre/vmre/engine"
	"github.com/vmre/vmre/subprocess"
)

// manualClock is an engine.Clock whose time moves, and whose timers run,
// only when advance is called, so that a benchmark takes one resource
// sample and no more.
type manualClock struct {
	mu      sync.Mutex
	now     time.Time
	pending []*manualTimer
}

type manualTimer struct {
	at      time.Time
	f       func()
	stopped atomic.Bool
}

func (t *manualTimer) Stop() bool { return !t.stopped.Swap(true) }

func (c *manualClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *manualClock) AfterFunc(d time.Duration, f func()) engine.Timer {
	c.mu.Lock()
	defer c.mu.Unlock()
	t := &manualTimer{at: c.now.Add(d), f: f}
	c.pending = append(c.pending, t)
	return t
}

// advance moves the clock by d and runs the timers then due.
func (c *manualClock) advance(d time.Duration) {
	c.mu.Lock()
	c.now = c.now.Add(d)
	var due []*manualTimer
	kept := c.pending[:0]
	for _, t := range c.pending {
		if t.at.After(c.now) {
			kept = append(kept, t)
		} else {
			due = append(due, t)
		}
	}
	c.pending = kept
	c.mu.Unlock()
	for _, t := range due {
		if !t.stopped.Swap(true) {
			t.f()
		}
	}
}

// sampledLauncher launches fake runtimes whose process is the test's own,
// so the engine samples real resource usage for each, and that write one
// stdout line at info level and one stderr line without a level, as the
// bench plugin does.
type sampledLauncher struct{}

type sampledProc struct{ fakeProc }

func (*sampledProc) Pid() int { return os.Getpid() }

func (sampledLauncher) Launch(_ context.Context, _ engine.Spec, output func(*subprocess.Line)) (subprocess.Status, vmre.Runtime, error) {
	output(&subprocess.Line{Stream: subprocess.StreamStdout, Level: zerolog.InfoLevel, Text: []byte("started")})
	output(&subprocess.Line{Stream: subprocess.StreamStderr, Level: zerolog.NoLevel, Text: []byte("warming up")})
	return subprocess.Status{Pid: os.Getpid(), Addr: "127.0.0.1:40001", ProtocolVersion: 42,
			StartedAt: time.Now(), HandshakeDuration: 3 * time.Millisecond},
		&sampledProc{fakeProc{done: make(chan struct{})}}, nil
}

// BenchmarkMetricsScrape serves GET /metrics with 500 live, sampled
// runtimes, in the exposition Go's client gets (text) and the one
// Prometheus negotiates (OpenMetrics), both gzipped as Prometheus asks.
// It is where the CPU of a scrape is profiled and counted
// (`perf stat -e instructions`); the bench program's metrics group times
// scrapes of real plugins.
func BenchmarkMetricsScrape(b *testing.B) {
	h := benchHandler(b, 500)
	for _, bm := range []struct {
		name, accept string
	}{
		{"text", ""},
		{"openmetrics", "application/openmetrics-text;version=1.0.0,application/openmetrics-text;version=0.0.1;q=0.75,text/plain;version=0.0.4;q=0.5,*/*;q=0.1"},
	} {
		b.Run(bm.name, func(b *testing.B) {
			req := httptest.NewRequest(http.MethodGet, api.MetricsPath, nil)
			req.Header.Set("Accept-Encoding", "gzip")
			if bm.accept != "" {
				req.Header.Set("Accept", bm.accept)
			}
			var size int
			for b.Loop() {
				rec := httptest.NewRecorder()
				h.ServeHTTP(rec, req)
				if rec.Code != http.StatusOK {
					b.Fatalf("GET /metrics: %d %s", rec.Code, rec.Body)
				}
				size = rec.Body.Len()
			}
			b.ReportMetric(float64(size), "gzip-bytes/op")
		})
	}
}

// benchHandler serves the API of an engine with n live runtimes, each
// sampled once.
func benchHandler(b *testing.B, n int) http.Handler {
	b.Helper()
	clock := &manualClock{now: time.Now()}
	eng, err := engine.New(engine.Config{Launcher: sampledLauncher{}, Clock: clock, Log: zerolog.Nop()})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { eng.Close(context.Background()) })
	h, err := api.New(eng, api.Config{Token: testToken, Dashboard: fstest.MapFS{}})
	if err != nil {
		b.Fatal(err)
	}
	for i := range n {
		if _, err := eng.Launch(b.Context(), engine.Spec{Name: fmt.Sprintf("vm-%d", i), Path: "/opt/vm"}); err != nil {
			b.Fatal(err)
		}
	}
	// One resource sample of every runtime: the sampler's interval passes
	// once.
	w := eng.Watch()
	defer w.Close()
	clock.advance(engine.DefaultSampleInterval)
	sampled := make(map[string]bool)
	for len(sampled) < n {
		c, err := w.Next(b.Context())
		if err != nil {
			b.Fatal(err)
		}
		switch c.Kind {
		case engine.ChangeUsage:
			sampled[c.Runtime.ID] = true
		case engine.ChangeSnapshot:
			for _, r := range c.Snapshot {
				if r.Usage != nil {
					sampled[r.ID] = true
				}
			}
		}
	}
	return h
}
