// Command runner is the benchmark proper; bench's main package builds it,
// with the plugins, and runs it. It compares vmre against avalanchego
// v1.15.0's vms/rpcchainvm/runtime/subprocess and hashicorp/go-plugin v1.7.0
// on the same machine in the same run, and against the operating system's
// floor, and prints one Markdown table. See BENCHMARKS.md at the repository
// root.
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"
)

type options struct {
	runs         int
	exitRuns     int
	avaExitRuns  int
	termRuns     int
	grace        time.Duration
	concs        []int
	concRounds   int
	floodBytes   int64
	floodLines   []int
	floodFormats []string
	floodRuns    int
	tputDur      time.Duration
	tputRounds   int
	tputConc     int
	watchers     int
	watchEvents  int
	only         string
	pluginDir    string
	cpuprofile   string
	memprofile   string
	keep         bool
	leaks        bool
	stopPause    time.Duration
	floodNoUnbuf bool
	floodDir     string
	watchProto   string
	watchGzip    string
	watchWhere   string
	reloadN      int
	reloadRounds int
	doctorRuns   int
	concEngines  string
	concDeadline time.Duration

	hsfloodConns int
	hsfloodRuns  int

	superviseN       int
	superviseIdle    time.Duration
	superviseProfile string
	concProfile      string
	concPerfCtl      string
	superviseCrashes int

	metricsN        int
	metricsScrapes  int
	metricsLaunches int
}

func main() {
	var o options
	var concs, lines string
	flag.IntVar(&o.runs, "runs", 200, "launch->handshake and cooperative-stop runs per engine")
	flag.DurationVar(&o.stopPause, "stop-pause", 20*time.Millisecond, "pause between a plugin's handshake and its timed stop (a node never stops a VM the instant it started)")
	flag.IntVar(&o.exitRuns, "exit-runs", 50, "exit-before-handshake runs for vmre and the floor")
	flag.IntVar(&o.avaExitRuns, "ava-exit-runs", 3, "exit-before-handshake runs for avalanchego (each waits its 5 s timeout)")
	flag.IntVar(&o.termRuns, "term-runs", 20, "SIGTERM-ignoring stop runs per engine")
	flag.DurationVar(&o.grace, "grace", 200*time.Millisecond, "graceful-stop period for the SIGTERM-ignoring stop, both engines")
	flag.StringVar(&concs, "conc", "100,500", "concurrent launch counts")
	flag.IntVar(&o.concRounds, "conc-rounds", 3, "rounds per concurrent launch count and engine")
	flag.DurationVar(&o.concDeadline, "conc-plugin-deadline", time.Minute, "the plugin's own Initialize deadline in conc, under both engines (AVAPLUGIN_INITIALIZE_TIMEOUT); the default, the engines' handshake timeout, lets every launch complete, so that the CPU rows compare the same work; 5s is avalanchego's rpcchainvm.Serve deadline, under which avalanchego's launches fail at N=500")
	flag.StringVar(&o.concEngines, "conc-engines", "vmre,avalanchego", "engines the concurrent launches run (one alone: to count its syscalls with perf, whose comm is \"runner\")")
	flag.Int64Var(&o.floodBytes, "flood-bytes", 200<<20, "bytes of output lines the flood plugin writes")
	flag.StringVar(&lines, "flood-lines", "128,1024", "flood line lengths in bytes, newline included")
	flag.BoolVar(&o.floodNoUnbuf, "flood-no-unbuffered", false, "skip the flood runs of vmre logging into an unbuffered *os.File")
	flag.StringVar(&o.floodDir, "flood-dir", "", "directory of the flood runs' log files (default: /dev/shm if it is a directory, so the disk's writeback is not measured; else the temporary directory)")
	flag.IntVar(&o.floodRuns, "flood-runs", 3, "flood runs per engine and line length")
	floodFormats := flag.String("flood-formats", "plain", "line formats the flood plugin writes: plain, zap-console (avalanchego, colour codes, JSON fields), zap-logger (the same lines written by avalanchego's own logger, one write(2) per line), geth, json (zap), hclog-json (also run through go-plugin's host)")
	flag.DurationVar(&o.tputDur, "tput-dur", time.Second, "duration of one Initialize throughput round")
	flag.IntVar(&o.tputRounds, "tput-rounds", 5, "Initialize throughput rounds per server/protocol")
	flag.IntVar(&o.tputConc, "tput-conc", 32, "concurrent Initialize callers")
	flag.IntVar(&o.watchers, "watchers", 1000, "watch-stream subscribers")
	flag.IntVar(&o.watchEvents, "watch-events", 20, "state changes delivered to the watchers (rounded up to launch+stop cycles of 4)")
	flag.StringVar(&o.watchGzip, "watch-gzip", "both", "watchers offer gzip (yes: connect-go's default, the server then compresses every message), do not (no), or run both")
	flag.StringVar(&o.watchProto, "watch-proto", "both", "watch transport: grpcweb (HTTP/1.1, one connection per watcher, like the dashboard), grpc (h2c, like Node.js clients), or run both")
	flag.IntVar(&o.reloadN, "reload-n", 100, "runtimes of the config file in the reload runs")
	flag.IntVar(&o.reloadRounds, "reload-rounds", 10, "config reloads with one runtime changed")
	flag.IntVar(&o.doctorRuns, "doctor-runs", 20, "runs of each whole program (vmre doctor, vmre version and their avalanchego baselines)")
	flag.IntVar(&o.superviseN, "supervise-n", 100, "idle supervised runtimes in the supervise runs")
	flag.DurationVar(&o.superviseIdle, "supervise-idle", time.Minute, "how long the supervise run measures the engine's idle CPU")
	flag.StringVar(&o.concProfile, "conc-cpuprofile", "", "write a CPU profile of each conc round's launch phase only (from the first launch until all have returned) into this directory, made if missing, one file per round (go tool pprof merges them)")
	flag.StringVar(&o.concPerfCtl, "conc-perf-ctl", "", "control FIFO of a `perf record --control fifo:FIFO -D -1` run of the runner: conc enables its events over each launch phase only")
	flag.StringVar(&o.superviseProfile, "supervise-cpuprofile", "", "write a CPU profile of the supervise run's idle window only to this file")
	flag.IntVar(&o.superviseCrashes, "supervise-crashes", 20, "plugins SIGKILLed in the supervise run's crash-to-running rounds")
	flag.IntVar(&o.metricsN, "metrics-n", 500, "live runtimes during the /metrics scrapes")
	flag.IntVar(&o.metricsScrapes, "metrics-scrapes", 200, "timed /metrics scrapes")
	flag.IntVar(&o.metricsLaunches, "metrics-launches", 100, "launches with metrics on, and as many with metrics off, interleaved")
	flag.IntVar(&o.hsfloodConns, "hsflood-conns", 2000, "foreign connections flooding the handshake port in the hsflood runs")
	flag.IntVar(&o.hsfloodRuns, "hsflood-runs", 5, "unflooded and flooded tokenless handshakes in the hsflood runs (each)")
	hsfloodAttackerOf := flag.String("hsflood-attacker-of", "", "internal: run as the hsflood attacker of the handshake port at this address")
	flag.StringVar(&o.watchWhere, "watch-where", "both", "where the watchers run: process (a process of their own, as browsers are), inline (the engine's process), or both")
	// A watcher process (-watch-where process) is this binary run with
	// these two.
	watchClientOf := flag.String("watch-client-of", "", "internal: run as the watcher process of the API at this URL")
	watchWant := flag.Int64("watch-want", 0, "internal: changes the watcher process waits for")
	flag.StringVar(&o.only, "only", "", "comma-separated metric groups to run: launch,breakdown,ready,exit,term,conc,flood,tput,apart,watch,reload,supervise,metrics,doctor,hsflood (default all)")
	flag.StringVar(&o.pluginDir, "plugin-dir", "", "directory holding the avaplugin and gpplugin binaries (required)")
	flag.StringVar(&o.cpuprofile, "cpuprofile", "", "write a CPU profile of the whole run to this file")
	flag.StringVar(&o.memprofile, "memprofile", "", "write an allocation profile of the whole run to this file")
	flag.BoolVar(&o.leaks, "leaks", false, "print the stacks of engine goroutines left after the SIGTERM-ignoring stops")
	flag.BoolVar(&o.keep, "keep", false, "keep the temporary directory (plugins, flood logs)")
	flag.Parse()
	if *hsfloodAttackerOf != "" {
		if err := hsfloodAttacker(*hsfloodAttackerOf, o.hsfloodConns); err != nil {
			fmt.Fprintln(os.Stderr, "bench hsflood attacker:", err)
			os.Exit(1)
		}
		return
	}
	if *watchClientOf != "" {
		if err := watchClientMain(*watchClientOf, o.watchers, *watchWant, o.watchProto, o.watchGzip != "no"); err != nil {
			fmt.Fprintln(os.Stderr, "bench watcher process:", err)
			os.Exit(1)
		}
		return
	}
	o.concs = parseInts(concs)
	o.floodLines = parseInts(lines)
	o.floodFormats = strings.Split(*floodFormats, ",")

	if err := run(context.Background(), o); err != nil {
		fmt.Fprintln(os.Stderr, "bench:", err)
		os.Exit(1)
	}
}

func parseInts(s string) []int {
	var out []int
	for _, f := range strings.Split(s, ",") {
		var n int
		if _, err := fmt.Sscan(strings.TrimSpace(f), &n); err == nil && n > 0 {
			out = append(out, n)
		}
	}
	return out
}

func (o options) want(group string) bool {
	if o.only == "" {
		return true
	}
	for _, g := range strings.Split(o.only, ",") {
		if strings.TrimSpace(g) == group {
			return true
		}
	}
	return false
}

// env is what every metric needs.
type env struct {
	o    options
	tmp  string
	ava  string // avaplugin path
	gp   string // gpplugin path
	vmre string // the vmre command, built from ../cmd/vmre
	// floodDir holds the flood runs' log files: -flood-dir, or tmpfs.
	floodDir string
	rows     []*row
	notes    []string
	started  time.Time
}

func run(ctx context.Context, o options) error {
	tmp, err := os.MkdirTemp("", "vmre-bench-")
	if err != nil {
		return err
	}
	if !o.keep {
		defer os.RemoveAll(tmp)
	}
	e := &env{o: o, tmp: tmp, started: time.Now()}
	if o.pluginDir == "" {
		return fmt.Errorf("-plugin-dir is required (run the benchmark with `cd bench && go run .`)")
	}
	e.ava = filepath.Join(o.pluginDir, "avaplugin")
	e.gp = filepath.Join(o.pluginDir, "gpplugin")
	e.vmre = filepath.Join(o.pluginDir, "vmre")
	if o.want("flood") {
		base := o.floodDir
		if fi, err := os.Stat("/dev/shm"); base == "" && err == nil && fi.IsDir() {
			base = "/dev/shm"
		}
		if base == "" {
			e.floodDir = tmp
		} else if e.floodDir, err = os.MkdirTemp(base, "vmre-bench-flood-"); err != nil {
			return err
		} else {
			defer os.RemoveAll(e.floodDir)
		}
	}

	if o.memprofile != "" {
		defer func() {
			if err := writeAllocProfile(o.memprofile); err != nil {
				fmt.Fprintln(os.Stderr, "memprofile:", err)
			}
		}()
	}
	if o.cpuprofile != "" {
		stop, err := startCPUProfile(o.cpuprofile)
		if err != nil {
			return err
		}
		defer stop()
	}

	loadStart := loadAvg()
	steps := []struct {
		group string
		f     func(context.Context, *env) error
	}{
		{"launch", benchLaunch},
		{"breakdown", benchBreakdown},
		{"ready", benchReady},
		{"exit", benchExitEarly},
		{"term", benchIgnoreTerm},
		{"conc", benchConcurrent},
		{"flood", benchFlood},
		{"tput", benchThroughput},
		{"apart", benchApart},
		{"watch", benchWatch},
		{"reload", benchReload},
		{"supervise", benchSupervise},
		{"metrics", benchMetrics},
		{"doctor", benchDoctor},
		{"hsflood", benchHandshakeFlood},
	}
	for _, s := range steps {
		if !o.want(s.group) {
			continue
		}
		fmt.Fprintf(os.Stderr, "%s: %s ...\n", time.Since(e.started).Round(time.Second), s.group)
		if err := s.f(ctx, e); err != nil {
			return fmt.Errorf("%s: %w", s.group, err)
		}
	}

	fmt.Println(machineLine())
	fmt.Printf("load average (1/5/15 min): at start %s, at end %s; wall time %s\n",
		loadStart, loadAvg(), time.Since(e.started).Round(time.Second))
	if cmdline := os.Getenv("VMRE_BENCH_CMDLINE"); cmdline != "" {
		fmt.Printf("command: %s\n", cmdline)
	}
	fmt.Println()
	printTable(os.Stdout, e.rows)
	if len(e.notes) > 0 {
		fmt.Println()
		for _, n := range e.notes {
			fmt.Println("- " + n)
		}
	}
	return nil
}

func (e *env) note(format string, args ...any) {
	e.notes = append(e.notes, fmt.Sprintf(format, args...))
}

func (e *env) progress(format string, args ...any) {
	fmt.Fprintf(os.Stderr, "  "+format+"\n", args...)
}
