package main

import (
	"fmt"
	"io"
	"math"
	"strings"
)

// Engine columns of the table.
const (
	colVmre  = "vmre"
	colAva   = "avalanchego"
	colGP    = "go-plugin"
	colFloor = "floor"
)

// row is one line of the result table: one metric, its samples per engine,
// and how vmre fares against its target.
type row struct {
	metric string
	unit   string
	vals   map[string]sample
	// higherBetter marks throughput-like metrics.
	higherBetter bool
	target       string
	// verdict is filled by check: "met", "MISSED", or "".
	verdict string
}

func newRow(metric, unit string) *row {
	return &row{metric: metric, unit: unit, vals: map[string]sample{}}
}

func (r *row) add(col string, v float64) { r.vals[col] = append(r.vals[col], v) }

func (r *row) p50(col string) float64 { return r.vals[col].p50() }
func (r *row) p99(col string) float64 { return r.vals[col].p99() }

// ratio is vmre's p50 over peer's p50.
func (r *row) ratio(peer string) float64 {
	a, b := r.p50(colVmre), r.p50(peer)
	if math.IsNaN(a) || math.IsNaN(b) || b == 0 {
		return math.NaN()
	}
	return a / b
}

// check sets the target text and verdict.
func (r *row) check(target string, ok bool) {
	r.target = target
	if ok {
		r.verdict = "met"
	} else {
		r.verdict = "MISSED"
	}
}

func (r *row) cell(col string) string {
	s := r.vals[col]
	if len(s) == 0 {
		return "-"
	}
	if len(s) == 1 {
		return fmtVal(s[0]) + " (n=1)"
	}
	return fmt.Sprintf("%s / %s (n=%d)", fmtVal(s.p50()), fmtVal(s.p99()), len(s))
}

func printTable(w io.Writer, rows []*row) {
	head := []string{"metric", "unit", "vmre p50 / p99", "avalanchego p50 / p99", "go-plugin p50 / p99", "floor p50 / p99", "vmre/ava", "vmre/go-plugin", "target", "result"}
	fmt.Fprintln(w, "| "+strings.Join(head, " | ")+" |")
	sep := make([]string, len(head))
	for i := range sep {
		sep[i] = "---"
	}
	fmt.Fprintln(w, "|"+strings.Join(sep, "|")+"|")
	for _, r := range rows {
		cells := []string{
			r.metric, r.unit,
			r.cell(colVmre), r.cell(colAva), r.cell(colGP), r.cell(colFloor),
			fmtVal(r.ratio(colAva)), fmtVal(r.ratio(colGP)),
			dash(r.target), dash(r.verdict),
		}
		fmt.Fprintln(w, "| "+strings.Join(cells, " | ")+" |")
	}
}

func dash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}
