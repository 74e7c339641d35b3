package api

import (
	"runtime"
	"runtime/debug"
	rtmetrics "runtime/metrics"
	"sync"
	"time"

	dto "github.com/prometheus/client_model/go"
)

// The Go runtime's families: the names, help texts, types and values of
// client_golang's default Go collector (collectors.NewGoCollector() of
// the client_golang version in go.mod's test requirements, which
// TestGoAndProcessFamiliesMatchClientGolang compares them with), so that
// dashboards and alerts written for any Go program work on vmre.

// goRuntimeGauges are the runtime/metrics the default Go collector
// exposes as gauges of their own, with its names: the runtime's name, its
// path and unit joined by underscores.
var goRuntimeGauges = []struct{ metric, name, unit string }{
	{"/gc/gogc:percent", "go_gc_gogc_percent", "percent"},
	{"/gc/gomemlimit:bytes", "go_gc_gomemlimit_bytes", "bytes"},
	{"/sched/gomaxprocs:threads", "go_sched_gomaxprocs_threads", "threads"},
}

// The runtime/metrics the go_memstats_ families are computed from.
const (
	rmTinyAllocs    = "/gc/heap/tiny/allocs:objects"
	rmAllocs        = "/gc/heap/allocs:objects"
	rmFrees         = "/gc/heap/frees:objects"
	rmAllocBytes    = "/gc/heap/allocs:bytes"
	rmHeapObjects   = "/gc/heap/objects:objects"
	rmHeapGoal      = "/gc/heap/goal:bytes"
	rmTotal         = "/memory/classes/total:bytes"
	rmHeapObjBytes  = "/memory/classes/heap/objects:bytes"
	rmHeapUnused    = "/memory/classes/heap/unused:bytes"
	rmHeapReleased  = "/memory/classes/heap/released:bytes"
	rmHeapFree      = "/memory/classes/heap/free:bytes"
	rmHeapStacks    = "/memory/classes/heap/stacks:bytes"
	rmOSStacks      = "/memory/classes/os-stacks:bytes"
	rmMSpanInuse    = "/memory/classes/metadata/mspan/inuse:bytes"
	rmMSpanFree     = "/memory/classes/metadata/mspan/free:bytes"
	rmMCacheInuse   = "/memory/classes/metadata/mcache/inuse:bytes"
	rmMCacheFree    = "/memory/classes/metadata/mcache/free:bytes"
	rmProfBuckets   = "/memory/classes/profiling/buckets:bytes"
	rmMetadataOther = "/memory/classes/metadata/other:bytes"
	rmOther         = "/memory/classes/other:bytes"
)

// goMemStats are the go_memstats_ families read from runtime/metrics
// (runtime.ReadMemStats would stop the world), each the sum of the
// runtime metrics in of.
var goMemStats = []struct {
	name, help string
	typ        dto.MetricType
	of         []string
}{
	{"go_memstats_alloc_bytes", "Number of bytes allocated in heap and currently in use. Equals to /memory/classes/heap/objects:bytes.",
		dto.MetricType_GAUGE, []string{rmHeapObjBytes}},
	{"go_memstats_alloc_bytes_total", "Total number of bytes allocated in heap until now, even if released already. Equals to /gc/heap/allocs:bytes.",
		dto.MetricType_COUNTER, []string{rmAllocBytes}},
	{"go_memstats_sys_bytes", "Number of bytes obtained from system. Equals to /memory/classes/total:byte.",
		dto.MetricType_GAUGE, []string{rmTotal}},
	{"go_memstats_mallocs_total", "Total number of heap objects allocated, both live and gc-ed. Semantically a counter version for go_memstats_heap_objects gauge. Equals to /gc/heap/allocs:objects + /gc/heap/tiny/allocs:objects.",
		dto.MetricType_COUNTER, []string{rmAllocs, rmTinyAllocs}},
	{"go_memstats_frees_total", "Total number of heap objects frees. Equals to /gc/heap/frees:objects + /gc/heap/tiny/allocs:objects.",
		dto.MetricType_COUNTER, []string{rmFrees, rmTinyAllocs}},
	{"go_memstats_heap_alloc_bytes", "Number of heap bytes allocated and currently in use, same as go_memstats_alloc_bytes. Equals to /memory/classes/heap/objects:bytes.",
		dto.MetricType_GAUGE, []string{rmHeapObjBytes}},
	{"go_memstats_heap_sys_bytes", "Number of heap bytes obtained from system. Equals to /memory/classes/heap/objects:bytes + /memory/classes/heap/unused:bytes + /memory/classes/heap/released:bytes + /memory/classes/heap/free:bytes.",
		dto.MetricType_GAUGE, []string{rmHeapObjBytes, rmHeapUnused, rmHeapReleased, rmHeapFree}},
	{"go_memstats_heap_idle_bytes", "Number of heap bytes waiting to be used. Equals to /memory/classes/heap/released:bytes + /memory/classes/heap/free:bytes.",
		dto.MetricType_GAUGE, []string{rmHeapReleased, rmHeapFree}},
	{"go_memstats_heap_inuse_bytes", "Number of heap bytes that are in use. Equals to /memory/classes/heap/objects:bytes + /memory/classes/heap/unused:bytes",
		dto.MetricType_GAUGE, []string{rmHeapObjBytes, rmHeapUnused}},
	{"go_memstats_heap_released_bytes", "Number of heap bytes released to OS. Equals to /memory/classes/heap/released:bytes.",
		dto.MetricType_GAUGE, []string{rmHeapReleased}},
	{"go_memstats_heap_objects", "Number of currently allocated objects. Equals to /gc/heap/objects:objects.",
		dto.MetricType_GAUGE, []string{rmHeapObjects}},
	{"go_memstats_stack_inuse_bytes", "Number of bytes obtained from system for stack allocator in non-CGO environments. Equals to /memory/classes/heap/stacks:bytes.",
		dto.MetricType_GAUGE, []string{rmHeapStacks}},
	{"go_memstats_stack_sys_bytes", "Number of bytes obtained from system for stack allocator. Equals to /memory/classes/heap/stacks:bytes + /memory/classes/os-stacks:bytes.",
		dto.MetricType_GAUGE, []string{rmHeapStacks, rmOSStacks}},
	{"go_memstats_mspan_inuse_bytes", "Number of bytes in use by mspan structures. Equals to /memory/classes/metadata/mspan/inuse:bytes.",
		dto.MetricType_GAUGE, []string{rmMSpanInuse}},
	{"go_memstats_mspan_sys_bytes", "Number of bytes used for mspan structures obtained from system. Equals to /memory/classes/metadata/mspan/inuse:bytes + /memory/classes/metadata/mspan/free:bytes.",
		dto.MetricType_GAUGE, []string{rmMSpanInuse, rmMSpanFree}},
	{"go_memstats_mcache_inuse_bytes", "Number of bytes in use by mcache structures. Equals to /memory/classes/metadata/mcache/inuse:bytes.",
		dto.MetricType_GAUGE, []string{rmMCacheInuse}},
	{"go_memstats_mcache_sys_bytes", "Number of bytes used for mcache structures obtained from system. Equals to /memory/classes/metadata/mcache/inuse:bytes + /memory/classes/metadata/mcache/free:bytes.",
		dto.MetricType_GAUGE, []string{rmMCacheInuse, rmMCacheFree}},
	{"go_memstats_buck_hash_sys_bytes", "Number of bytes used by the profiling bucket hash table. Equals to /memory/classes/profiling/buckets:bytes.",
		dto.MetricType_GAUGE, []string{rmProfBuckets}},
	{"go_memstats_gc_sys_bytes", "Number of bytes used for garbage collection system metadata. Equals to /memory/classes/metadata/other:bytes.",
		dto.MetricType_GAUGE, []string{rmMetadataOther}},
	{"go_memstats_other_sys_bytes", "Number of bytes used for other system allocations. Equals to /memory/classes/other:bytes.",
		dto.MetricType_GAUGE, []string{rmOther}},
	{"go_memstats_next_gc_bytes", "Number of heap bytes when next garbage collection will take place. Equals to /gc/heap/goal:bytes.",
		dto.MetricType_GAUGE, []string{rmHeapGoal}},
}

// goFamilies reads the Go runtime's families. It is safe for concurrent
// use.
type goFamilies struct {
	mu      sync.Mutex         // guards samples' values
	samples []rtmetrics.Sample // the gauges', then the memstats' inputs
	index   map[string]int     // runtime metric -> its sample
	gauges  []goGauge
}

// goGauge is a runtime metric shown as a gauge of its own.
type goGauge struct {
	name, help, unit string
	sample           int // index in goFamilies.samples
}

// newGoFamilies looks up the runtime metrics this Go version has: one it
// lacks is left out (a gauge) or counts 0 (in a memstats sum), as in
// client_golang.
func newGoFamilies() *goFamilies {
	known := make(map[string]string) // name -> description
	for _, d := range rtmetrics.All() {
		known[d.Name] = d.Description
	}
	g := &goFamilies{index: make(map[string]int)}
	add := func(name string) (int, bool) {
		if _, ok := known[name]; !ok {
			return 0, false
		}
		if i, ok := g.index[name]; ok {
			return i, true
		}
		g.samples = append(g.samples, rtmetrics.Sample{Name: name})
		g.index[name] = len(g.samples) - 1
		return len(g.samples) - 1, true
	}
	for _, r := range goRuntimeGauges {
		if i, ok := add(r.metric); ok {
			g.gauges = append(g.gauges, goGauge{name: r.name, help: known[r.metric] + " Sourced from " + r.metric + ".", unit: r.unit, sample: i})
		}
	}
	for _, ms := range goMemStats {
		for _, name := range ms.of {
			add(name)
		}
	}
	return g
}

// families appends the Go runtime's families to out.
func (g *goFamilies) families(out []*dto.MetricFamily) []*dto.MetricFamily {
	out = append(out,
		valueFamily("go_goroutines", "Number of goroutines that currently exist.", dto.MetricType_GAUGE, float64(runtime.NumGoroutine())),
		valueFamily("go_threads", "Number of OS threads created.", dto.MetricType_GAUGE, float64(threadsCreated())),
	)
	var gc debug.GCStats
	gc.PauseQuantiles = make([]time.Duration, 5)
	debug.ReadGCStats(&gc)
	quantiles := make([]*dto.Quantile, len(gc.PauseQuantiles))
	for i, q := range gc.PauseQuantiles {
		quantiles[i] = &dto.Quantile{Quantile: new(float64(i) / float64(len(gc.PauseQuantiles)-1)), Value: new(q.Seconds())}
	}
	out = append(out,
		&dto.MetricFamily{
			Name: new("go_gc_duration_seconds"),
			Help: new("A summary of the wall-time pause (stop-the-world) duration in garbage collection cycles."),
			Type: dto.MetricType_SUMMARY.Enum(),
			Metric: []*dto.Metric{{Summary: &dto.Summary{
				SampleCount: new(uint64(gc.NumGC)),
				SampleSum:   new(gc.PauseTotal.Seconds()),
				Quantile:    quantiles,
			}}},
		},
		valueFamily("go_memstats_last_gc_time_seconds", "Number of seconds since 1970 of last garbage collection.", dto.MetricType_GAUGE,
			float64(gc.LastGC.UnixNano())/1e9),
		&dto.MetricFamily{
			Name: new("go_info"),
			Help: new("Information about the Go environment."),
			Type: dto.MetricType_GAUGE.Enum(),
			Metric: []*dto.Metric{{
				Label: []*dto.LabelPair{{Name: new("version"), Value: new(runtime.Version())}},
				Gauge: &dto.Gauge{Value: new(1.0)},
			}},
		},
	)

	g.mu.Lock()
	defer g.mu.Unlock()
	rtmetrics.Read(g.samples)
	for _, r := range g.gauges {
		mf := valueFamily(r.name, r.help, dto.MetricType_GAUGE, scalar(g.samples[r.sample].Value))
		mf.Unit = new(r.unit)
		out = append(out, mf)
	}
	for _, ms := range goMemStats {
		var v uint64
		for _, name := range ms.of {
			if i, ok := g.index[name]; ok {
				v += g.samples[i].Value.Uint64()
			}
		}
		out = append(out, valueFamily(ms.name, ms.help, ms.typ, float64(v)))
	}
	return out
}

// scalar returns the value of a runtime metric of kind uint64 or
// float64.
func scalar(v rtmetrics.Value) float64 {
	if v.Kind() == rtmetrics.KindFloat64 {
		return v.Float64()
	}
	return float64(v.Uint64())
}

// threadsCreated returns the number of OS threads the runtime has made,
// what client_golang's go_threads reports.
func threadsCreated() int {
	n, _ := runtime.ThreadCreateProfile(nil)
	return n
}
