package api

import (
	"slices"
	"sync"
	"time"

	dto "github.com/prometheus/client_model/go"
	"google.golang.org/protobuf/types/known/timestamppb"
)

// counter is a Prometheus counter family: one series, or with a label
// one series per value of the label. Every series it shows has been
// created by [counter.add] (with 0 to show it from the start). It is safe
// for concurrent use.
type counter struct {
	name, help string
	label      string // "" for a family of one series without labels
	created    *timestamppb.Timestamp

	mu     sync.Mutex
	values map[string]float64 // by label value ("" without a label)
}

// newCounter returns a counter family without series; label is the name
// of its one label, or "" for none. Its creation time is now.
func newCounter(name, help, label string) *counter {
	return &counter{
		name:    name,
		help:    help,
		label:   label,
		created: timestamppb.New(time.Now()),
		values:  make(map[string]float64),
	}
}

// add adds v (>= 0) to the series whose label has value (ignored without
// a label), creating the series if need be.
func (c *counter) add(value string, v float64) {
	if c.label == "" {
		value = ""
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	c.values[value] += v
}

// family returns the counter's family as of now, its series in label
// value order; nil if it has none.
func (c *counter) family() *dto.MetricFamily {
	c.mu.Lock()
	defer c.mu.Unlock()
	if len(c.values) == 0 {
		return nil
	}
	values := make([]string, 0, len(c.values))
	for v := range c.values {
		values = append(values, v)
	}
	slices.Sort(values)
	mf := &dto.MetricFamily{
		Name:   &c.name,
		Help:   &c.help,
		Type:   dto.MetricType_COUNTER.Enum(),
		Metric: make([]*dto.Metric, len(values)),
	}
	for i, v := range values {
		m := &dto.Metric{Counter: &dto.Counter{Value: new(c.values[v]), CreatedTimestamp: c.created}}
		if c.label != "" {
			m.Label = []*dto.LabelPair{{Name: &c.label, Value: new(v)}}
		}
		mf.Metric[i] = m
	}
	return mf
}
