package api

import (
	"context"
	"errors"
	"net/http"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	dto "github.com/prometheus/client_model/go"
	"github.com/rs/zerolog"

	"github.com/vmre/vmre"
	"github.com/vmre/vmre/engine"
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

// metrics serves the engine's metrics. Gauges and the runtime counters the
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
	calls   *callLimiter

	handshakes        prometheus.Histogram
	handshakeFailures *prometheus.CounterVec
	stops             prometheus.Histogram
	forcedKills       prometheus.Counter

	// spare is the family builder of the last scrape, kept for the next
	// one; nil while a scrape uses it.
	spare atomic.Pointer[familyBuilder]

	mu    sync.Mutex
	exits map[string]map[string]float64 // runtime id -> reason -> count
	seen  map[string]counted            // runtime id -> its launch last counted
}

// counted holds the start time of the launch whose handshake, and of the
// launch whose end, were last counted for one runtime.
type counted struct{ handshake, exit time.Time }

func newMetrics(eng *engine.Engine, streams *streamGauges, calls *callLimiter) *metrics {
	m := &metrics{
		eng:     eng,
		streams: streams,
		calls:   calls,
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

// handler returns the /metrics handler: the families of the engine's
// snapshot (see [metrics.runtimeFamilies]) next to those of a registry of
// its own (the counters and histograms of m, Go's runtime and the engine
// process). It starts the watcher that counts exits; that ends when the
// engine closes. The registry is built at the first scrape: the Go
// collector reads the runtime's metric descriptions and matches their names
// against its rules, over half a million instructions that an engine no
// one scrapes need not spend at its start. A registration that fails (a
// defect: the collectors are fixed) answers every scrape with HTTP 500.
func (m *metrics) handler() http.Handler {
	go m.watch(m.eng.Watch())
	build := sync.OnceValues(m.buildHandler)
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		h, err := build()
		if err != nil {
			http.Error(w, "register metrics: "+err.Error(), http.StatusInternalServerError)
			return
		}
		h.ServeHTTP(w, r)
	})
}

func (m *metrics) buildHandler() (http.Handler, error) {
	reg := prometheus.NewRegistry()
	for _, c := range []prometheus.Collector{
		m.handshakes, m.handshakeFailures, m.stops, m.forcedKills,
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "vmre_api_watchers",
			Help: "WatchRuntimes streams open on the API port.",
		}, func() float64 { return float64(m.streams.watchers.Load()) }),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "vmre_api_followers",
			Help: "TailOutput streams following a runtime's output on the API port.",
		}, func() float64 { return float64(m.streams.followers.Load()) }),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "vmre_api_calls",
			Help: "Calls in flight on the API port under its call cap (watch and output streams aside).",
		}, func() float64 { held, _, _ := m.calls.stats(); return float64(held) }),
		prometheus.NewCounterFunc(prometheus.CounterOpts{
			Name: "vmre_api_calls_evicted_total",
			Help: "Calls the API port ended at its call cap to make room: each the one waiting the longest for its client.",
		}, func() float64 { _, evicted, _ := m.calls.stats(); return float64(evicted) }),
		prometheus.NewCounterFunc(prometheus.CounterOpts{
			Name: "vmre_api_calls_refused_total",
			Help: "Calls the API port refused with resource_exhausted at its call cap.",
		}, func() float64 { _, _, refused := m.calls.stats(); return float64(refused) }),
		collectors.NewGoCollector(),
		collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}),
	} {
		if err := reg.Register(c); err != nil {
			return nil, err
		}
	}
	gather := gathererFunc(func() ([]*dto.MetricFamily, func(), error) {
		mfs, err := reg.Gather()
		// Concurrent scrapes each need a builder: the second builds its
		// own.
		b := m.spare.Swap(nil)
		if b == nil {
			b = new(familyBuilder)
		}
		b.reset()
		mfs = append(mfs, m.runtimeFamilies(b)...)
		slices.SortFunc(mfs, func(a, b *dto.MetricFamily) int { return strings.Compare(a.GetName(), b.GetName()) })
		return mfs, func() { m.spare.Store(b) }, err
	})
	// A scrape of a few hundred runtimes is over half a megabyte of text:
	// klauspost's gzip at its fastest level takes a ninth of the
	// instructions of the standard library's default level, which promhttp
	// uses, for about 5% more bytes.
	return gzipped(promhttp.HandlerForTransactional(gather, promhttp.HandlerOpts{EnableOpenMetrics: true, DisableCompression: true})), nil
}

// gathererFunc is a [prometheus.TransactionalGatherer] in a function.
type gathererFunc func() ([]*dto.MetricFamily, func(), error)

// Gather implements [prometheus.TransactionalGatherer].
func (f gathererFunc) Gather() ([]*dto.MetricFamily, func(), error) { return f() }

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

// streamGauges counts the API's open streams for vmre_api_watchers and
// vmre_api_followers; the service adds and removes each stream.
type streamGauges struct {
	watchers  atomic.Int64
	followers atomic.Int64
}
