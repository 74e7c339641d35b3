//go:build !linux

package api

import dto "github.com/prometheus/client_model/go"

// processFamilies would read the engine process's families; outside Linux
// there are none.
type processFamilies struct{}

func newProcessFamilies() *processFamilies { return &processFamilies{} }

// families returns out.
func (p *processFamilies) families(out []*dto.MetricFamily) []*dto.MetricFamily { return out }
