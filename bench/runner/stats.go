package main

import (
	"fmt"
	"math"
	"slices"
	"time"
)

// sample is a set of measurements of one metric for one engine.
type sample []float64

func (s sample) pct(p float64) float64 {
	if len(s) == 0 {
		return math.NaN()
	}
	c := slices.Clone(s)
	slices.Sort(c)
	// Nearest rank.
	i := int(math.Ceil(p/100*float64(len(c)))) - 1
	i = max(0, min(i, len(c)-1))
	return c[i]
}

func (s sample) p50() float64 { return s.pct(50) }
func (s sample) p99() float64 { return s.pct(99) }

func ms(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }
func us(d time.Duration) float64 { return float64(d) / float64(time.Microsecond) }

// fmtVal prints a value with 3 significant decimals for small numbers.
func fmtVal(v float64) string {
	switch {
	case math.IsNaN(v):
		return "-"
	case math.Abs(v) >= 10000:
		return fmt.Sprintf("%.0f", v)
	case math.Abs(v) >= 100:
		return fmt.Sprintf("%.1f", v)
	case math.Abs(v) >= 1:
		return fmt.Sprintf("%.2f", v)
	default:
		return fmt.Sprintf("%.3f", v)
	}
}
