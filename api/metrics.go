package api

import (
	"context"
	"errors"
	"net/http"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"github.com/rs/zerolog"

	"github.com/vmre/vmre"
	"github.com/vmre/vmre/engine"
	"github.com/vmre/vmre/server"
)

// MetricsPath is where the API port serves Prometheus metrics.
const MetricsPath = "/metrics"

// Exit reasons of vmre_runtime_exits_total.
const (
	exitStopped   = "stopped"   // ended by a stop (Stop, restart, shutdown)
	exitZero      = "exit_zero" // exited on its own with status 0
	exitCode      = "exit_code" // exited on its own with a non-zero status
	exitSignal    = "signal"    // ended on its own by a signal
	exitHandshake = "handshake" // its launch or handshake failed
	exitLiveness  = "liveness"  // stopped because its liveness probe failed
	exitLost      = "lost"      // an attached runtime whose probe gave up
)

// handshakeFailures lists the reasons of vmre_handshake_failures_total, in
// the order they are tested: the first sentinel a launch error matches
// names it, and one matching none is "other".
var handshakeFailures = []struct {
	reason string
	errs   []error
}{
	{"timeout", []error{vmre.ErrHandshakeTimeout}},
	{"version_mismatch", []error{vmre.ErrProtocolVersionMismatch}},
	{"process_exited", []error{vmre.ErrProcessExited}},
	{"unreachable", []error{vmre.ErrProcessNotFound}},
	{"preflight", []error{vmre.ErrNotExecutable, vmre.ErrChecksumMismatch}},
	{"invalid_config", []error{vmre.ErrInvalidConfig}},
}

const handshakeFailureOther = "other"

func handshakeFailureReason(err error) string {
	for _, f := range handshakeFailures {
		for _, sentinel := range f.errs {
			if errors.Is(err, sentinel) {
				return f.reason
			}
		}
	}
	return handshakeFailureOther
}

// outputLevel is the level label of vmre_output_lines_total.
func outputLevel(l zerolog.Level) string {
	if l == zerolog.NoLevel {
		return "none"
	}
	return l.String()
}

var (
	descInfo = prometheus.NewDesc("vmre_runtime_info",
		"A runtime the engine tracks; always 1.",
		[]string{"id", "name", "protocol_version", "attached"}, nil)
	descState = prometheus.NewDesc("vmre_runtime_state",
		"The runtime's state: 1 for the current one, 0 for the others.",
		[]string{"id", "name", "state"}, nil)
	descStart = prometheus.NewDesc("vmre_runtime_start_time_seconds",
		"When the runtime's current process was launched, in seconds since the epoch.",
		[]string{"id", "name"}, nil)
	descRestarts = prometheus.NewDesc("vmre_runtime_restarts_total",
		"Relaunches of the runtime, by policy or by request.",
		[]string{"id", "name"}, nil)
	descExits = prometheus.NewDesc("vmre_runtime_exits_total",
		"Ends of the runtime's processes, by reason.",
		[]string{"id", "name", "reason"}, nil)
	descCPU = prometheus.NewDesc("vmre_runtime_cpu_seconds_total",
		"User and system CPU time of the runtime's process tree.",
		[]string{"id", "name"}, nil)
	descRSS = prometheus.NewDesc("vmre_runtime_resident_memory_bytes",
		"Resident memory of the runtime's process tree.",
		[]string{"id", "name"}, nil)
	descFDs = prometheus.NewDesc("vmre_runtime_open_fds",
		"Open file descriptors of the runtime's process tree.",
		[]string{"id", "name"}, nil)
	descProcs = prometheus.NewDesc("vmre_runtime_processes",
		"Processes in the runtime's process tree.",
		[]string{"id", "name"}, nil)
	descThreads = prometheus.NewDesc("vmre_runtime_threads",
		"Threads in the runtime's process tree.",
		[]string{"id", "name"}, nil)
	descProbeFailures = prometheus.NewDesc("vmre_health_probe_failures_total",
		"Liveness probes of the runtime that failed.",
		[]string{"id", "name"}, nil)
	descOutputLines = prometheus.NewDesc("vmre_output_lines_total",
		"Output lines the runtime wrote, by stream and parsed level (none: no level).",
		[]string{"id", "name", "stream", "level"}, nil)
	descOutputDropped = prometheus.NewDesc("vmre_output_dropped_lines_total",
		"Output lines that TailOutput followers of the runtime missed because they fell behind.",
		[]string{"id", "name"}, nil)
	descRefused = prometheus.NewDesc("vmre_handshake_refused_total",
		"Handshake callers refused before their call reached the engine (not the launched plugin, no or a wrong token).",
		[]string{"reason"}, nil)
)

// metrics is the engine's collector. Gauges and the runtime counters the
// engine keeps itself (restarts, CPU, output lines, probe failures) are
// read from a snapshot at scrape time, so a runtime's series vanish when
// it leaves the engine's history, and nothing is counted on the launch or
// output paths. What the engine does not keep (exits by reason, handshake
// durations and failures, stop durations, forced kills) is counted by one
// watcher of the engine's changes, once per launch: a launch is known by
// its runtime's id and start time, so a snapshot (the first message, and
// after the watcher fell behind) neither repeats nor loses a launch it
// shows. A launch that began and ended entirely while the watcher was
// behind is not counted.
type metrics struct {
	eng     *engine.Engine
	streams *streamGauges

	handshakes        prometheus.Histogram
	handshakeFailures *prometheus.CounterVec
	stops             prometheus.Histogram
	forcedKills       prometheus.Counter

	mu    sync.Mutex
	exits map[string]map[string]float64 // runtime id -> reason -> count
	seen  map[string]counted            // runtime id -> its launch last counted
}

// counted holds the start time of the launch whose handshake, and of the
// launch whose end, were last counted for one runtime.
type counted struct{ handshake, exit time.Time }

func newMetrics(eng *engine.Engine, streams *streamGauges) *metrics {
	m := &metrics{
		eng:     eng,
		streams: streams,
		handshakes: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "vmre_handshake_duration_seconds",
			Help:    "Time from a launch to its completed handshake.",
			Buckets: []float64{.001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10},
		}),
		handshakeFailures: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "vmre_handshake_failures_total",
			Help: "Launches whose handshake failed, by reason.",
		}, []string{"reason"}),
		stops: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name: "vmre_stop_duration_seconds",
			Help: "Time from a stop's request to the process's exit.",
			// A clean stop takes milliseconds; the default grace period
			// before the SIGKILL is 5 s, and a VM's Shutdown call may
			// take longer.
			Buckets: []float64{.005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30, 60},
		}),
		forcedKills: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "vmre_stop_forced_kills_total",
			Help: "Stops that had to SIGKILL the process after its grace period.",
		}),
		exits: make(map[string]map[string]float64),
		seen:  make(map[string]counted),
	}
	// Every reason has a series from the start, so that rate() and
	// increase() see the first failure.
	for _, f := range handshakeFailures {
		m.handshakeFailures.WithLabelValues(f.reason)
	}
	m.handshakeFailures.WithLabelValues(handshakeFailureOther)
	return m
}

// handler returns the /metrics handler over a registry of its own (the
// engine's collector, Go's runtime and the engine process), and starts
// the watcher that counts exits; it ends when the engine closes.
func (m *metrics) handler() (http.Handler, error) {
	reg := prometheus.NewRegistry()
	for _, c := range []prometheus.Collector{
		m, m.handshakes, m.handshakeFailures, m.stops, m.forcedKills,
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "vmre_api_watchers",
			Help: "WatchRuntimes streams open on the API port.",
		}, func() float64 { return float64(m.streams.watchers.Load()) }),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "vmre_api_followers",
			Help: "TailOutput streams following a runtime's output on the API port.",
		}, func() float64 { return float64(m.streams.followers.Load()) }),
		collectors.NewGoCollector(),
		collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}),
	} {
		if err := reg.Register(c); err != nil {
			return nil, err
		}
	}
	go m.watch(m.eng.Watch())
	return promhttp.HandlerFor(reg, promhttp.HandlerOpts{EnableOpenMetrics: true}), nil
}

func (m *metrics) watch(w *engine.Watcher) {
	defer w.Close()
	for {
		// Next fails only with ErrClosed here: its ctx is never done.
		c, err := w.Next(context.Background())
		if err != nil {
			return
		}
		m.apply(c)
	}
}

func (m *metrics) apply(c engine.Change) {
	m.mu.Lock()
	defer m.mu.Unlock()
	switch c.Kind {
	case engine.ChangeSnapshot:
		present := make(map[string]bool, len(c.Snapshot))
		for _, r := range c.Snapshot {
			present[r.ID] = true
			m.countLocked(r)
		}
		for id := range m.seen {
			if !present[id] {
				delete(m.seen, id)
				delete(m.exits, id)
			}
		}
	case engine.ChangeUpdated:
		m.countLocked(c.Runtime)
	case engine.ChangeRemoved:
		delete(m.seen, c.RemovedID)
		delete(m.exits, c.RemovedID)
	}
}

// countLocked counts r's current launch's handshake and end, each once.
func (m *metrics) countLocked(r engine.Runtime) {
	s := m.seen[r.ID]
	if r.HandshakeDuration > 0 && !r.StartedAt.Equal(s.handshake) {
		m.handshakes.Observe(r.HandshakeDuration.Seconds())
		s.handshake = r.StartedAt
	}
	if r.End != engine.EndNone && !r.StartedAt.Equal(s.exit) {
		byReason := m.exits[r.ID]
		if byReason == nil {
			byReason = make(map[string]float64)
			m.exits[r.ID] = byReason
		}
		byReason[exitReason(r)]++
		if r.End == engine.EndLaunchFailed {
			m.handshakeFailures.WithLabelValues(handshakeFailureReason(r.LaunchErr)).Inc()
		}
		if r.StopDuration > 0 {
			m.stops.Observe(r.StopDuration.Seconds())
		}
		if r.Exit != nil && r.Exit.ForcedKill {
			m.forcedKills.Inc()
		}
		s.exit = r.StartedAt
	}
	m.seen[r.ID] = s
}

func exitReason(r engine.Runtime) string {
	switch r.End {
	case engine.EndStopped:
		return exitStopped
	case engine.EndLost:
		return exitLost
	case engine.EndLaunchFailed:
		return exitHandshake
	case engine.EndLiveness:
		return exitLiveness
	case engine.EndFailed:
		if r.Exit != nil && r.Exit.Signal != "" {
			return exitSignal
		}
		return exitCode
	default:
		return exitZero
	}
}

// Describe implements [prometheus.Collector].
func (m *metrics) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{descInfo, descState, descStart, descRestarts, descExits, descCPU, descRSS, descFDs, descProcs, descThreads,
		descProbeFailures, descOutputLines, descOutputDropped, descRefused} {
		ch <- d
	}
}

// Collect implements [prometheus.Collector].
func (m *metrics) Collect(ch chan<- prometheus.Metric) {
	runtimes := m.eng.List()
	states := engine.States()
	names := make(map[string]string, len(runtimes))
	for _, r := range runtimes {
		names[r.ID] = r.Name
		id, name := r.ID, r.Name
		ch <- prometheus.MustNewConstMetric(descInfo, prometheus.GaugeValue, 1,
			id, name, strconv.FormatUint(uint64(r.ProtocolVersion), 10), strconv.FormatBool(r.Attached))
		for _, s := range states {
			v := 0.0
			if r.State == s {
				v = 1
			}
			ch <- prometheus.MustNewConstMetric(descState, prometheus.GaugeValue, v, id, name, s.String())
		}
		if !r.StartedAt.IsZero() {
			ch <- prometheus.MustNewConstMetric(descStart, prometheus.GaugeValue,
				float64(r.StartedAt.UnixNano())/1e9, id, name)
		}
		ch <- prometheus.MustNewConstMetric(descRestarts, prometheus.CounterValue, float64(r.Restarts), id, name)
		ch <- prometheus.MustNewConstMetric(descProbeFailures, prometheus.CounterValue, float64(r.ProbeFailures), id, name)
		if u := r.Usage; u != nil {
			ch <- prometheus.MustNewConstMetric(descCPU, prometheus.CounterValue, u.CPUSeconds, id, name)
			ch <- prometheus.MustNewConstMetric(descRSS, prometheus.GaugeValue, float64(u.RSSBytes), id, name)
			ch <- prometheus.MustNewConstMetric(descFDs, prometheus.GaugeValue, float64(u.OpenFDs), id, name)
			ch <- prometheus.MustNewConstMetric(descProcs, prometheus.GaugeValue, float64(u.Processes), id, name)
			ch <- prometheus.MustNewConstMetric(descThreads, prometheus.GaugeValue, float64(u.Threads), id, name)
		}
	}
	// A runtime registered after List has no name yet: its lines go in
	// the next scrape.
	for _, o := range m.eng.OutputStats() {
		name, ok := names[o.ID]
		if !ok {
			continue
		}
		ch <- prometheus.MustNewConstMetric(descOutputDropped, prometheus.CounterValue, float64(o.Dropped), o.ID, name)
		for _, c := range o.Counts {
			ch <- prometheus.MustNewConstMetric(descOutputLines, prometheus.CounterValue, float64(c.Lines),
				o.ID, name, c.Stream, outputLevel(c.Level))
		}
	}
	refusals := m.eng.Refusals()
	for _, reason := range server.RefusalReasons() {
		ch <- prometheus.MustNewConstMetric(descRefused, prometheus.CounterValue, float64(refusals.Count(reason)), reason.String())
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	for _, r := range runtimes {
		for reason, n := range m.exits[r.ID] {
			ch <- prometheus.MustNewConstMetric(descExits, prometheus.CounterValue, n, r.ID, r.Name, reason)
		}
	}
}

// streamGauges counts the API's open streams for vmre_api_watchers and
// vmre_api_followers; the service adds and removes each stream.
type streamGauges struct {
	watchers  atomic.Int64
	followers atomic.Int64
}
