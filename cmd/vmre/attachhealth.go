package main

import (
	"flag"
	"time"

	"github.com/vmre/vmre/engine"
)

// defaultAttachHealthInterval is how often vmre run --attach probes each
// attached VM: the engine sees an attached VM die only through this probe.
const defaultAttachHealthInterval = 10 * time.Second

// attachHealthFlags configure the liveness probe of attached runtimes: a
// grpc.health.v1 Check on each VM's address; an attached runtime whose
// probe fails --attach-health-threshold times in a row is lost.
type attachHealthFlags struct {
	interval  time.Duration
	timeout   time.Duration
	threshold int
}

func (f *attachHealthFlags) register(fs *flag.FlagSet) {
	fs.DurationVar(&f.interval, "attach-health-interval", defaultAttachHealthInterval, "with --attach, how often each attached VM's grpc.health.v1 is probed; 0: never (attached VMs are then never found lost)")
	fs.DurationVar(&f.timeout, "attach-health-timeout", engine.DefaultHealthTimeout, "with --attach, the bound of each probe")
	fs.IntVar(&f.threshold, "attach-health-threshold", engine.DefaultHealthFailureThreshold, "with --attach, the failed probes in a row after which an attached VM is lost")
}

// check is the engine's setting; the engine validates it.
func (f *attachHealthFlags) check() engine.HealthCheck {
	return engine.HealthCheck{Interval: f.interval, Timeout: f.timeout, FailureThreshold: f.threshold}
}
