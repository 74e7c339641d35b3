package api

import (
	"bytes"
	"math"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
)

// encodeBoth encodes ours and client_golang's collector c, gathered by a
// registry of its own, in format f.
func encodeBoth(t *testing.T, f expfmt.Format, ours *dto.MetricFamily, c prometheus.Collector) (got, want string) {
	t.Helper()
	reg := prometheus.NewPedanticRegistry()
	reg.MustRegister(c)
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	if len(mfs) != 1 {
		t.Fatalf("client_golang gathered %d families, want 1", len(mfs))
	}
	enc := func(mf *dto.MetricFamily) string {
		var b bytes.Buffer
		e := expfmt.NewEncoder(&b, f)
		if err := e.Encode(mf); err != nil {
			t.Fatalf("encode %s: %v", mf.GetName(), err)
		}
		if c, ok := e.(expfmt.Closer); ok {
			if err := c.Close(); err != nil {
				t.Fatal(err)
			}
		}
		return b.String()
	}
	return enc(ours), enc(mfs[0])
}

var formats = []expfmt.Format{
	expfmt.NewFormat(expfmt.TypeTextPlain),
	expfmt.NewFormat(expfmt.TypeOpenMetrics),
}

// TestHistogramMatchesClientGolang: for the same observations (on a
// bound, between bounds, below the first, above the last, negative) the
// histogram's exposition is client_golang's, bucket for bucket, +Inf,
// sum and count included.
func TestHistogramMatchesClientGolang(t *testing.T) {
	t.Parallel()
	bounds := []float64{.005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30, 60}
	tests := []struct {
		name string
		obs  []float64
	}{
		{name: "none"},
		{name: "one", obs: []float64{0.003}},
		{name: "bounds and beyond", obs: []float64{.005, .01, 0.0051, 60, 61, 1e9, 0, -1, 2.5, 2.4999, 30}},
		{name: "many", obs: func() []float64 {
			var o []float64
			for i := range 1000 {
				o = append(o, math.Pow(1.02, float64(i))/1000)
			}
			return o
		}()},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			ours := newHistogram("x_seconds", "Help of x.", bounds)
			theirs := prometheus.NewHistogram(prometheus.HistogramOpts{Name: "x_seconds", Help: "Help of x.", Buckets: bounds})
			for _, v := range tt.obs {
				ours.observe(v)
				theirs.Observe(v)
			}
			for _, f := range formats {
				got, want := encodeBoth(t, f, ours.family(), theirs)
				if got != want {
					t.Errorf("%s:\n%s\nclient_golang:\n%s", f, got, want)
				}
			}
		})
	}
}

// TestCounterMatchesClientGolang: a counter with and without a label
// shows client_golang's series, values and order.
func TestCounterMatchesClientGolang(t *testing.T) {
	t.Parallel()
	t.Run("label", func(t *testing.T) {
		t.Parallel()
		ours := newCounter("x_total", "Help of x.", "reason")
		theirs := prometheus.NewCounterVec(prometheus.CounterOpts{Name: "x_total", Help: "Help of x."}, []string{"reason"})
		for _, r := range []string{"timeout", "other", "b", "a", "timeout", "z"} {
			ours.add(r, 1)
			theirs.WithLabelValues(r).Inc()
		}
		ours.add("zero", 0)
		theirs.WithLabelValues("zero")
		for _, f := range formats {
			if got, want := encodeBoth(t, f, ours.family(), theirs); got != want {
				t.Errorf("%s:\n%s\nclient_golang:\n%s", f, got, want)
			}
		}
	})
	t.Run("no label", func(t *testing.T) {
		t.Parallel()
		ours := newCounter("x_total", "Help of x.", "")
		theirs := prometheus.NewCounter(prometheus.CounterOpts{Name: "x_total", Help: "Help of x."})
		ours.add("", 0)
		for range 3 {
			ours.add("ignored", 1)
			theirs.Inc()
		}
		for _, f := range formats {
			if got, want := encodeBoth(t, f, ours.family(), theirs); got != want {
				t.Errorf("%s:\n%s\nclient_golang:\n%s", f, got, want)
			}
		}
	})
	t.Run("no series", func(t *testing.T) {
		t.Parallel()
		if mf := newCounter("x_total", "Help of x.", "reason").family(); mf != nil {
			t.Errorf("a counter without series has a family: %v", mf)
		}
	})
}
