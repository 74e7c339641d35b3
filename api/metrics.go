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

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
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
	logLost func() uint64 // nil: no vmre_log_lost_bytes_total

	handshakes        *histogram
	handshakeFailures *counter
	stops             *histogram
	forcedKills       *counter

	// process returns what the Go and process families keep between
	// scrapes, built at the first scrape.
	process func() *processStats

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

func newMetrics(eng *engine.Engine, streams *streamGauges, calls *callLimiter, logLost func() uint64) *metrics {
	m := &metrics{
		eng:     eng,
		streams: streams,
		calls:   calls,
		logLost: logLost,
		handshakes: newHistogram("vmre_handshake_duration_seconds",
			"Time from a launch to its completed handshake.",
			[]float64{.001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10}),
		handshakeFailures: newCounter("vmre_handshake_failures_total",
			"Launches whose handshake failed, by reason.", "reason"),
		// A clean stop takes milliseconds; the default grace period
		// before the SIGKILL is 5 s, and a VM's Shutdown call may take
		// longer.
		stops: newHistogram("vmre_stop_duration_seconds",
			"Time from a stop's request to the process's exit.",
			[]float64{.005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30, 60}),
		forcedKills: newCounter("vmre_stop_forced_kills_total",
			"Stops that had to SIGKILL the process after its grace period.", ""),
		process: sync.OnceValue(newProcessStats),
		exits:   make(map[string]map[string]float64),
		seen:    make(map[string]counted),
	}
	// Every reason has a series from the start, so that rate() and
	// increase() see the first failure.
	for _, f := range handshakeFailures {
		m.handshakeFailures.add(f.reason, 0)
	}
	m.handshakeFailures.add(handshakeFailureOther, 0)
	m.forcedKills.add("", 0)
	return m
}

// handler returns the /metrics handler. It starts the watcher that counts
// exits; that ends when the engine closes. Each scrape is encoded in the
// format the scraper's Accept header asks for among
// [expfmt.DefaultOpenMetricsAcceptedFormats] (OpenMetrics 1.0.0 and
// 0.0.1, protobuf, the Prometheus text format, which is the default),
// with the metric-name escaping it asks for, and gzipped if it accepts
// gzip; a name[] query parameter limits the scrape to the families named.
// Concurrent scrapes are served concurrently.
func (m *metrics) handler() http.Handler {
	go m.watch(m.eng.Watch())
	// A scrape of a few hundred runtimes is over half a megabyte of text:
	// klauspost's gzip at its fastest level takes a ninth of the
	// instructions of the standard library's default level for about 5%
	// more bytes.
	return gzipped(http.HandlerFunc(m.serveHTTP))
}

func (m *metrics) serveHTTP(w http.ResponseWriter, r *http.Request) {
	// Concurrent scrapes each need a builder: the second builds its own.
	b := m.spare.Swap(nil)
	if b == nil {
		b = new(familyBuilder)
	}
	defer m.spare.Store(b)
	b.reset()
	mfs := m.gather(b)

	format := expfmt.NegotiateAccept(r.Header, expfmt.DefaultOpenMetricsAcceptedFormats()...)
	w.Header().Add("Vary", "Accept")
	w.Header().Set("Content-Type", string(format))
	var only map[string]bool
	if names := r.URL.Query()["name[]"]; len(names) > 0 {
		only = make(map[string]bool, len(names))
		for _, name := range names {
			only[name] = true
		}
	}
	enc := expfmt.NewEncoder(w, format)
	for _, mf := range mfs {
		if only != nil && !only[mf.GetName()] {
			continue
		}
		// The status line is sent: a failed write (the scraper gone) or
		// a family the format cannot carry ends the body early, which
		// the scraper sees as a truncated or unparsable scrape.
		if err := enc.Encode(mf); err != nil {
			return
		}
	}
	if c, ok := enc.(expfmt.Closer); ok {
		_ = c.Close() // # EOF of OpenMetrics; an error is the scraper's, as above
	}
}

// gather returns every family of a scrape, sorted by name: the families of
// the engine's snapshot (see [metrics.runtimeFamilies]), built by b; m's
// counters and histograms; the API port's gauges; Go's runtime and the
// engine process (see [processStats]).
func (m *metrics) gather(b *familyBuilder) []*dto.MetricFamily {
	held, evicted, refused := m.calls.stats()
	mfs := []*dto.MetricFamily{
		m.handshakes.family(), m.handshakeFailures.family(), m.stops.family(), m.forcedKills.family(),
		valueFamily("vmre_api_watchers", "WatchRuntimes streams open on the API port.",
			dto.MetricType_GAUGE, float64(m.streams.watchers.Load())),
		valueFamily("vmre_api_followers", "TailOutput streams following a runtime's output on the API port.",
			dto.MetricType_GAUGE, float64(m.streams.followers.Load())),
		valueFamily("vmre_api_calls", "Calls in flight on the API port under its call cap (watch and output streams aside).",
			dto.MetricType_GAUGE, float64(held)),
		valueFamily("vmre_api_calls_evicted_total", "Calls the API port ended at its call cap to make room: each the one waiting the longest for its client.",
			dto.MetricType_COUNTER, float64(evicted)),
		valueFamily("vmre_api_calls_refused_total", "Calls the API port refused with resource_exhausted at its call cap.",
			dto.MetricType_COUNTER, float64(refused)),
	}
	if m.logLost != nil {
		mfs = append(mfs, valueFamily("vmre_log_lost_bytes_total",
			"Bytes of the engine's own log its output did not take (a closed stderr, a full disk): those events are lost.",
			dto.MetricType_COUNTER, float64(m.logLost())))
	}
	mfs = m.process().families(mfs)
	mfs = append(mfs, m.runtimeFamilies(b)...)
	slices.SortFunc(mfs, func(a, b *dto.MetricFamily) int { return strings.Compare(a.GetName(), b.GetName()) })
	return mfs
}

// processStats builds the Go runtime's and the engine process's families.
// Its set-up (looking up the runtime's metric descriptions, reading the
// process's start time) is done at the first scrape, not at the engine's
// start. It is safe for concurrent use.
type processStats struct {
	goRuntime *goFamilies
	process   *processFamilies
}

func newProcessStats() *processStats {
	return &processStats{goRuntime: newGoFamilies(), process: newProcessFamilies()}
}

// families appends the Go runtime's and the process's families to out.
func (p *processStats) families(out []*dto.MetricFamily) []*dto.MetricFamily {
	return p.process.families(p.goRuntime.families(out))
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
		m.handshakes.observe(r.HandshakeDuration.Seconds())
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
			m.handshakeFailures.add(handshakeFailureReason(r.LaunchErr), 1)
		}
		if r.StopDuration > 0 {
			m.stops.observe(r.StopDuration.Seconds())
		}
		if r.Exit != nil && r.Exit.ForcedKill {
			m.forcedKills.add("", 1)
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
