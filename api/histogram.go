package api

import (
	"slices"
	"sync"
	"time"

	dto "github.com/prometheus/client_model/go"
	"google.golang.org/protobuf/types/known/timestamppb"
)

// histogram is a Prometheus histogram with fixed buckets: an observation
// v counts in every bucket whose upper bound is >= v, and in the implicit
// +Inf bucket, as client_golang's classic histograms count it. It is safe
// for concurrent use; observations are rare (one per launch or stop), so
// a mutex guards it.
type histogram struct {
	name, help string
	bounds     []float64 // upper bounds, ascending, without +Inf
	created    *timestamppb.Timestamp

	mu     sync.Mutex
	counts []uint64 // observations per bucket, not cumulative
	count  uint64
	sum    float64
}

// newHistogram returns an empty histogram with the given upper bounds,
// which must be ascending; its creation time is now.
func newHistogram(name, help string, bounds []float64) *histogram {
	return &histogram{
		name:    name,
		help:    help,
		bounds:  bounds,
		created: timestamppb.New(time.Now()),
		counts:  make([]uint64, len(bounds)),
	}
}

// observe adds v.
func (h *histogram) observe(v float64) {
	i, _ := slices.BinarySearch(h.bounds, v)
	h.mu.Lock()
	defer h.mu.Unlock()
	if i < len(h.counts) {
		h.counts[i]++
	}
	h.count++
	h.sum += v
}

// family returns the histogram's family as of now, with cumulative bucket
// counts; the encoder adds the +Inf bucket from the sample count.
func (h *histogram) family() *dto.MetricFamily {
	h.mu.Lock()
	defer h.mu.Unlock()
	buckets := make([]dto.Bucket, len(h.bounds))
	hist := &dto.Histogram{
		Bucket:           make([]*dto.Bucket, len(h.bounds)),
		SampleCount:      new(h.count),
		SampleSum:        new(h.sum),
		CreatedTimestamp: h.created,
	}
	var cum uint64
	for i := range h.bounds {
		cum += h.counts[i]
		buckets[i].CumulativeCount, buckets[i].UpperBound = new(cum), &h.bounds[i]
		hist.Bucket[i] = &buckets[i]
	}
	return &dto.MetricFamily{
		Name:   &h.name,
		Help:   &h.help,
		Type:   dto.MetricType_HISTOGRAM.Enum(),
		Metric: []*dto.Metric{{Histogram: hist}},
	}
}
