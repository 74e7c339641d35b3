package api

import (
	"slices"
	"strconv"
	"strings"
	"unicode/utf8"

	dto "github.com/prometheus/client_model/go"
	"github.com/rs/zerolog"

	"github.com/vmre/vmre/engine"
	"github.com/vmre/vmre/server"
)

// family names one metric family the engine's snapshot feeds.
type family struct {
	name, help string
	typ        dto.MetricType
}

var (
	famInfo = family{"vmre_runtime_info",
		"A runtime the engine tracks; always 1.", dto.MetricType_GAUGE}
	famState = family{"vmre_runtime_state",
		"The runtime's state: 1 for the current one, 0 for the others.", dto.MetricType_GAUGE}
	famStart = family{"vmre_runtime_start_time_seconds",
		"When the runtime's current process was launched, in seconds since the epoch.", dto.MetricType_GAUGE}
	famRestarts = family{"vmre_runtime_restarts_total",
		"Relaunches of the runtime, by policy or by request.", dto.MetricType_COUNTER}
	famExits = family{"vmre_runtime_exits_total",
		"Ends of the runtime's processes, by reason.", dto.MetricType_COUNTER}
	famCPU = family{"vmre_runtime_cpu_seconds_total",
		"User and system CPU time of the runtime's process tree.", dto.MetricType_COUNTER}
	famRSS = family{"vmre_runtime_resident_memory_bytes",
		"Resident memory of the runtime's process tree.", dto.MetricType_GAUGE}
	famFDs = family{"vmre_runtime_open_fds",
		"Open file descriptors of the runtime's process tree.", dto.MetricType_GAUGE}
	famProcs = family{"vmre_runtime_processes",
		"Processes in the runtime's process tree.", dto.MetricType_GAUGE}
	famThreads = family{"vmre_runtime_threads",
		"Threads in the runtime's process tree.", dto.MetricType_GAUGE}
	famProbeFailures = family{"vmre_health_probe_failures_total",
		"Liveness probes of the runtime that failed.", dto.MetricType_COUNTER}
	famOutputLines = family{"vmre_output_lines_total",
		"Output lines the runtime wrote, by stream and parsed level (none: no level).", dto.MetricType_COUNTER}
	famOutputDropped = family{"vmre_output_dropped_lines_total",
		"Output lines that TailOutput followers of the runtime missed because they fell behind.", dto.MetricType_COUNTER}
	famRefused = family{"vmre_handshake_refused_total",
		"Handshake callers refused before their call reached the engine (not the launched plugin, no or a wrong token).", dto.MetricType_COUNTER}
)

// valueFamily returns a family of one series without labels and value v:
// a gauge or a counter read from elsewhere at scrape time.
func valueFamily(name, help string, typ dto.MetricType, v float64) *dto.MetricFamily {
	m := &dto.Metric{}
	switch typ {
	case dto.MetricType_COUNTER:
		m.Counter = &dto.Counter{Value: &v}
	default:
		m.Gauge = &dto.Gauge{Value: &v}
	}
	return &dto.MetricFamily{Name: &name, Help: &help, Type: typ.Enum(), Metric: []*dto.Metric{m}}
}

// Label names, shared by every label pair of every scrape.
var (
	labelAttached        = "attached"
	labelID              = "id"
	labelLevel           = "level"
	labelName            = "name"
	labelProtocolVersion = "protocol_version"
	labelReason          = "reason"
	labelState           = "state"
	labelStream          = "stream"
)

// labelPairs returns the pairs name="v" of each of values, at the same
// index.
func labelPairs(name *string, values []string) []*dto.LabelPair {
	out := make([]*dto.LabelPair, len(values))
	for i, v := range values {
		out[i] = &dto.LabelPair{Name: name, Value: &v}
	}
	return out
}

// states are the engine's states, and stateLabels their state="..."
// label pairs, at the same index.
var (
	states      = engine.States()
	stateLabels = func() []*dto.LabelPair {
		names := make([]string, len(states))
		for i, s := range states {
			names[i] = s.String()
		}
		return labelPairs(&labelState, names)
	}()
)

// attachedLabels holds the pairs attached="false" and attached="true".
var attachedLabels = map[bool]*dto.LabelPair{
	false: {Name: &labelAttached, Value: new("false")},
	true:  {Name: &labelAttached, Value: new("true")},
}

// exitReasons lists the reasons of vmre_runtime_exits_total in the order
// a scrape shows them, and exitLabels their reason="..." label pairs.
var (
	exitReasons = []string{exitStopped, exitZero, exitCode, exitSignal, exitHandshake, exitLiveness, exitLost}
	exitLabels  = labelPairs(&labelReason, exitReasons)
)

// familyBuilder builds the families of one scrape straight from the
// engine's snapshot: client_golang's const metrics would build, validate,
// sort and hash the label pairs of each of the thousands of series a few
// hundred runtimes have, where here a runtime's id and name pairs are
// built once and shared by all its series. Its samples, values and label
// pairs come from arenas that reset hands back for the next scrape, so a
// scrape allocates little and the garbage collector has little to do. The
// label pairs of each series are in name order, as client_golang writes
// them. A builder is used by one goroutine at a time.
type familyBuilder struct {
	metrics  arena[dto.Metric]
	gauges   arena[dto.Gauge]
	counters arena[dto.Counter]
	values   arena[float64]
	pairs    arena[dto.LabelPair]
	labels   arena[*dto.LabelPair]
	families map[string]*dto.MetricFamily // by name
}

// chunk is how many elements an arena allocates at once.
const chunk = 1024

// arena hands out the elements of the chunks it keeps, in order, and takes
// them all back at once.
type arena[T any] struct {
	chunks [][]T
	n      int // elements handed out
}

// take returns the next k elements, contiguous, as they were left (k <=
// chunk).
func (a *arena[T]) take(k int) []T {
	c, i := a.n/chunk, a.n%chunk
	if i+k > chunk {
		c, i = c+1, 0
	}
	if c == len(a.chunks) {
		a.chunks = append(a.chunks, make([]T, chunk))
	}
	a.n = c*chunk + i + k
	return a.chunks[c][i : i+k : i+k]
}

func (a *arena[T]) reset() { a.n = 0 }

func (b *familyBuilder) reset() {
	b.metrics.reset()
	b.gauges.reset()
	b.counters.reset()
	b.values.reset()
	b.pairs.reset()
	b.labels.reset()
}

// sample adds a sample with labels and value v to family f, a gauge or a
// counter.
func (b *familyBuilder) sample(f *dto.MetricFamily, labels []*dto.LabelPair, v float64) {
	m := &b.metrics.take(1)[0]
	m.Label, m.Gauge, m.Counter = labels, nil, nil
	value := &b.values.take(1)[0]
	*value = v
	if f.GetType() == dto.MetricType_COUNTER {
		m.Counter = &b.counters.take(1)[0]
		m.Counter.Value = value
	} else {
		m.Gauge = &b.gauges.take(1)[0]
		m.Gauge.Value = value
	}
	f.Metric = append(f.Metric, m)
}

// labelSet returns a label set of the given pairs, which must be in name
// order.
func (b *familyBuilder) labelSet(pairs ...*dto.LabelPair) []*dto.LabelPair {
	set := b.labels.take(len(pairs))
	copy(set, pairs)
	return set
}

// pair returns the label pair name="*v"; v must not change until the
// builder is reset. A value that is not UTF-8 is written with U+FFFD, so
// that no runtime name can make a scrape unparsable.
func (b *familyBuilder) pair(name, v *string) *dto.LabelPair {
	if !utf8.ValidString(*v) {
		v = new(strings.ToValidUTF8(*v, string(utf8.RuneError)))
	}
	p := &b.pairs.take(1)[0]
	p.Name, p.Value = name, v
	return p
}

// family returns family f without samples, with room for capacity.
func (b *familyBuilder) family(f *family, capacity int) *dto.MetricFamily {
	mf := b.families[f.name]
	if mf == nil {
		if b.families == nil {
			b.families = make(map[string]*dto.MetricFamily)
		}
		mf = &dto.MetricFamily{Name: &f.name, Help: &f.help, Type: &f.typ}
		b.families[f.name] = mf
	}
	mf.Metric = slices.Grow(mf.Metric[:0], capacity)
	return mf
}

// runtimeFamilies returns the families read from the engine's snapshot
// and m's exit counts, built by b: every runtime's series, and the
// refused handshakes by reason. They stay valid until b is reset.
func (m *metrics) runtimeFamilies(b *familyBuilder) []*dto.MetricFamily {
	runtimes := m.eng.List()
	outputs := m.eng.OutputStats()
	n := len(runtimes)
	info, state, start := b.family(&famInfo, n), b.family(&famState, n*len(states)), b.family(&famStart, n)
	restarts, probeFailures := b.family(&famRestarts, n), b.family(&famProbeFailures, n)
	cpu, rss, fds, procs, threads := b.family(&famCPU, n), b.family(&famRSS, n), b.family(&famFDs, n), b.family(&famProcs, n), b.family(&famThreads, n)
	// idName holds each runtime's id and name pairs, for its output
	// counts and exits.
	idName := make(map[string][]*dto.LabelPair, n)
	for i := range runtimes {
		r := &runtimes[i]
		id, name := b.pair(&labelID, &r.ID), b.pair(&labelName, &r.Name)
		idn := b.labelSet(id, name)
		idName[r.ID] = idn
		b.sample(info, b.labelSet(attachedLabels[r.Attached], id, name,
			b.pair(&labelProtocolVersion, new(strconv.FormatUint(uint64(r.ProtocolVersion), 10)))), 1)
		for i, s := range states {
			v := 0.0
			if s == r.State {
				v = 1
			}
			b.sample(state, b.labelSet(id, name, stateLabels[i]), v)
		}
		if !r.StartedAt.IsZero() {
			b.sample(start, idn, float64(r.StartedAt.UnixNano())/1e9)
		}
		b.sample(restarts, idn, float64(r.Restarts))
		b.sample(probeFailures, idn, float64(r.ProbeFailures))
		if u := r.Usage; u != nil {
			b.sample(cpu, idn, u.CPUSeconds)
			b.sample(rss, idn, float64(u.RSSBytes))
			b.sample(fds, idn, float64(u.OpenFDs))
			b.sample(procs, idn, float64(u.Processes))
			b.sample(threads, idn, float64(u.Threads))
		}
	}

	lines, dropped := b.family(&famOutputLines, 2*n), b.family(&famOutputDropped, n)
	levels := make(map[zerolog.Level]*dto.LabelPair)
	streams := make(map[string]*dto.LabelPair)
	for i := range outputs {
		o := &outputs[i]
		// A runtime registered after List has no name yet: its lines go
		// in the next scrape.
		idn, ok := idName[o.ID]
		if !ok {
			continue
		}
		b.sample(dropped, idn, float64(o.Dropped))
		for k := range o.Counts {
			c := &o.Counts[k]
			level, ok := levels[c.Level]
			if !ok {
				level = b.pair(&labelLevel, new(outputLevel(c.Level)))
				levels[c.Level] = level
			}
			stream, ok := streams[c.Stream]
			if !ok {
				stream = b.pair(&labelStream, &c.Stream)
				streams[c.Stream] = stream
			}
			b.sample(lines, b.labelSet(idn[0], level, idn[1], stream), float64(c.Lines))
		}
	}

	refused := b.family(&famRefused, 0)
	refusals := m.eng.Refusals()
	for _, reason := range server.RefusalReasons() {
		b.sample(refused, b.labelSet(b.pair(&labelReason, new(reason.String()))), float64(refusals.Count(reason)))
	}

	exits := b.family(&famExits, 0)
	m.mu.Lock()
	for _, r := range runtimes {
		byReason := m.exits[r.ID]
		for i, reason := range exitReasons {
			if c, ok := byReason[reason]; ok {
				idn := idName[r.ID]
				b.sample(exits, b.labelSet(idn[0], idn[1], exitLabels[i]), c)
			}
		}
	}
	m.mu.Unlock()

	var out []*dto.MetricFamily
	for _, f := range []*dto.MetricFamily{info, state, start, restarts, exits, cpu, rss, fds, procs, threads, probeFailures, lines, dropped, refused} {
		// A family without samples is left out, as client_golang does.
		if len(f.Metric) > 0 {
			out = append(out, f)
		}
	}
	return out
}
