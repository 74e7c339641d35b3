//go:build linux

package api_test

import (
	"net/http"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"

	"github.com/vmre/vmre/api"
)

// scrapeProto reads the API port's /metrics in the delimited protobuf
// format and returns its go_ and process_ families by name.
func scrapeProto(t *testing.T, h *harness) map[string]*dto.MetricFamily {
	t.Helper()
	req, err := http.NewRequestWithContext(t.Context(), http.MethodGet, h.url+api.MetricsPath, nil)
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Accept", string(expfmt.NewFormat(expfmt.TypeProtoDelim)))
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("GET /metrics: %s", resp.Status)
	}
	if got := resp.Header.Get("Content-Type"); !strings.HasPrefix(got, string(expfmt.NewFormat(expfmt.TypeProtoDelim))) {
		t.Fatalf("Content-Type %q", got)
	}
	dec := expfmt.NewDecoder(resp.Body, expfmt.NewFormat(expfmt.TypeProtoDelim))
	out := make(map[string]*dto.MetricFamily)
	for {
		mf := new(dto.MetricFamily)
		if err := dec.Decode(mf); err != nil {
			break
		}
		if strings.HasPrefix(mf.GetName(), "go_") || strings.HasPrefix(mf.GetName(), "process_") {
			out[mf.GetName()] = mf
		}
	}
	return out
}

// gatherClientGolang gathers client_golang's default Go and process
// collectors, as vmre registered them before it wrote its own.
func gatherClientGolang(t *testing.T, reg *prometheus.Registry) map[string]*dto.MetricFamily {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	out := make(map[string]*dto.MetricFamily)
	for _, mf := range mfs {
		out[mf.GetName()] = mf
	}
	return out
}

// value is a family's one sample's value (a summary's count).
func value(mf *dto.MetricFamily) float64 {
	m := mf.GetMetric()[0]
	switch {
	case m.Counter != nil:
		return m.GetCounter().GetValue()
	case m.Gauge != nil:
		return m.GetGauge().GetValue()
	case m.Summary != nil:
		return float64(m.GetSummary().GetSampleCount())
	}
	return 0
}

// labelNames lists the label names of each of mf's series.
func labelNames(mf *dto.MetricFamily) [][]string {
	var out [][]string
	for _, m := range mf.GetMetric() {
		var names []string
		for _, l := range m.GetLabel() {
			names = append(names, l.GetName())
		}
		out = append(out, names)
	}
	return out
}

// burnCPU spins until the process's CPU time grew by at least d.
func burnCPU(t *testing.T, d time.Duration) {
	t.Helper()
	cpu := func() time.Duration {
		var ru syscall.Rusage
		if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
			t.Fatal(err)
		}
		return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
	}
	for start := cpu(); cpu()-start < d; {
		for i := range 100000 {
			_ = i * i
		}
	}
}

// TestGoAndProcessFamiliesMatchClientGolang: the go_ and process_
// families of /metrics are those of client_golang's default Go and
// process collectors in the same process: the same names, help texts,
// types, units and label names; the values of what does not change are
// equal; each counter read between two reads of client_golang's lies
// between them; and process_cpu_seconds_total moves with the CPU spent.
func TestGoAndProcessFamiliesMatchClientGolang(t *testing.T) {
	t.Parallel()
	h := start(t, nil)
	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))

	before := gatherClientGolang(t, reg)
	ours := scrapeProto(t, h)
	after := gatherClientGolang(t, reg)

	var names, theirNames []string
	for name := range ours {
		names = append(names, name)
	}
	for name := range after {
		theirNames = append(theirNames, name)
	}
	slices.Sort(names)
	slices.Sort(theirNames)
	if !slices.Equal(names, theirNames) {
		t.Fatalf("families:\n%v\nclient_golang's:\n%v", names, theirNames)
	}
	// Values that hold still while the test runs.
	fixed := []string{"go_gc_gogc_percent", "go_gc_gomemlimit_bytes", "go_sched_gomaxprocs_threads",
		"process_start_time_seconds", "process_max_fds", "process_virtual_memory_max_bytes"}
	for _, name := range names {
		got, want := ours[name], after[name]
		if got.GetHelp() != want.GetHelp() || got.GetType() != want.GetType() || got.GetUnit() != want.GetUnit() {
			t.Errorf("%s: help %q type %s unit %q; client_golang: help %q type %s unit %q",
				name, got.GetHelp(), got.GetType(), got.GetUnit(), want.GetHelp(), want.GetType(), want.GetUnit())
		}
		if g, w := labelNames(got), labelNames(want); !slices.EqualFunc(g, w, slices.Equal) {
			t.Errorf("%s: label names %v, client_golang's %v", name, g, w)
		}
		if len(got.GetMetric()) != 1 {
			t.Errorf("%s: %d series", name, len(got.GetMetric()))
			continue
		}
		v := value(got)
		switch {
		case slices.Contains(fixed, name):
			if v != value(want) {
				t.Errorf("%s = %v, client_golang %v", name, v, value(want))
			}
		case got.GetType() == dto.MetricType_COUNTER || got.GetType() == dto.MetricType_SUMMARY || name == "go_threads":
			if lo, hi := value(before[name]), value(want); v < lo || v > hi {
				t.Errorf("%s = %v, not between client_golang's %v and %v read before and after", name, v, lo, hi)
			}
		case strings.HasPrefix(name, "process_") && strings.HasSuffix(name, "memory_bytes"):
			// Pages come and go between the reads, not half or twice of them.
			if w := value(want); v < w/2 || v > 2*w {
				t.Errorf("%s = %v, client_golang %v", name, v, w)
			}
		case v <= 0 && !strings.HasSuffix(name, "_released_bytes") && !strings.HasSuffix(name, "_last_gc_time_seconds"):
			t.Errorf("%s = %v, want > 0", name, v)
		}
	}
	if g, w := ours["go_info"].GetMetric()[0].GetLabel()[0].GetValue(), after["go_info"].GetMetric()[0].GetLabel()[0].GetValue(); g != w {
		t.Errorf("go_info version %q, client_golang %q", g, w)
	}
	if g, w := len(ours["go_gc_duration_seconds"].GetMetric()[0].GetSummary().GetQuantile()),
		len(after["go_gc_duration_seconds"].GetMetric()[0].GetSummary().GetQuantile()); g != w {
		t.Errorf("go_gc_duration_seconds has %d quantiles, client_golang %d", g, w)
	}

	cpu := value(ours["process_cpu_seconds_total"])
	burnCPU(t, 50*time.Millisecond)
	if moved := value(scrapeProto(t, h)["process_cpu_seconds_total"]); moved < cpu+0.04 {
		t.Errorf("process_cpu_seconds_total went from %v to %v after 50 ms of CPU", cpu, moved)
	}
}
