// Command apiattack measures what a hostile local client can do to
// `vmre run`'s API port, all on 127.0.0.1, bounded in count and time:
//
//   - streams: a flooding plugin runs (1 MiB output ring, the default), and
//     -streams following TailOutput streams on -stream-conns connections
//     ask for -lines lines first with an HTTP/2 flow-control window of 0,
//     so the engine can send them nothing. It reports the engine's RSS,
//     health latency, the plugin's output throughput (bytes of log per
//     second) and the engine's CPU time per MB of it, before, during and
//     after the attack.
//   - conns: vmre runs with -nofile descriptors and -idle-conns idle
//     HTTP/2 connections (preface and SETTINGS only) are opened; it reports
//     whether health and an authorised RestartRuntime (a relaunch) still
//     work, and how long they took.
//
// Compare two builds of vmre in the same run to get before/after figures:
//
//	cd bench && go run ./apiattack                       # builds ../cmd/vmre
//	cd bench && go run ./apiattack -vmre /tmp/vmre-old   # another build
//
// The plugin is bench/plugins/avaplugin's flood mode, built by the program.
package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync/atomic"
	"syscall"
	"time"

	"connectrpc.com/connect"
	vmrev1 "github.com/vmre/vmre/gen/vmre/v1"
	"github.com/vmre/vmre/gen/vmre/v1/vmrev1connect"
	"github.com/vmre/vmre/internal/h2raw"
	"google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/protobuf/proto"
)

const (
	protocolVersion = 46 // avaplugin's
	token           = "apiattack-token-0123456789abcdef"
)

type options struct {
	vmre, only             string
	streams, streamConns   int
	lines                  uint
	call                   string
	idleConns, nofile      int
	settle, measure, after time.Duration
	engineArgs             string
}

func main() {
	var o options
	flag.StringVar(&o.vmre, "vmre", "", "the vmre binary to attack (default: build ../cmd/vmre)")
	flag.StringVar(&o.only, "only", "streams,conns", "attacks to run: streams, conns")
	flag.IntVar(&o.streams, "streams", 1000, "zero-window TailOutput streams")
	flag.UintVar(&o.lines, "lines", 1_000_000, "lines each TailOutput stream asks for first (all the ring keeps)")
	flag.StringVar(&o.call, "call", "tail", "what the streams attack calls: tail (following TailOutput) or list (ListRuntimes, unary)")
	flag.IntVar(&o.streamConns, "stream-conns", 4, "connections carrying them (the server allows 250 streams per connection)")
	flag.IntVar(&o.idleConns, "idle-conns", 6000, "idle HTTP/2 connections in the conns attack")
	flag.IntVar(&o.nofile, "nofile", 4096, "vmre's descriptor limit in the conns attack")
	flag.DurationVar(&o.settle, "settle", 3*time.Second, "wait after the attack starts before measuring")
	flag.DurationVar(&o.measure, "measure", 3*time.Second, "throughput measuring window")
	flag.StringVar(&o.engineArgs, "engine-args", "", "more flags for vmre run, space-separated (e.g. \"--api-max-calls 256\")")
	flag.DurationVar(&o.after, "after", 5*time.Second, "wait after the attackers disconnect before the last RSS")
	flag.Parse()
	if err := run(o); err != nil {
		fmt.Fprintln(os.Stderr, "apiattack:", err)
		os.Exit(1)
	}
}

func run(o options) error {
	dir, err := os.MkdirTemp("", "vmre-apiattack-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	targets := []string{"./plugins/avaplugin"}
	if o.vmre == "" {
		targets = append(targets, "github.com/vmre/vmre/cmd/vmre")
		o.vmre = filepath.Join(dir, "vmre")
	}
	build := exec.Command("go", append([]string{"build", "-trimpath", "-o", dir + string(os.PathSeparator)}, targets...)...)
	build.Stdout, build.Stderr = os.Stderr, os.Stderr
	if err := build.Run(); err != nil {
		return fmt.Errorf("build: %w", err)
	}
	plugin := filepath.Join(dir, "avaplugin")
	fmt.Printf("vmre: %s\n\n", o.vmre)
	if strings.Contains(o.only, "streams") {
		if err := attackStreams(o, plugin, dir); err != nil {
			return fmt.Errorf("streams: %w", err)
		}
	}
	if strings.Contains(o.only, "conns") {
		if err := attackConns(o, plugin, dir); err != nil {
			return fmt.Errorf("conns: %w", err)
		}
	}
	return nil
}

// engine is a running `vmre run` whose JSON log (stderr) is counted and
// scanned.
type engine struct {
	cmd     *exec.Cmd
	logged  atomic.Int64 // bytes of log
	addr    chan string  // the API address, once
	running chan struct{}
}

func startEngine(dir, vmreBin string, nofile int, engineArgs string, pluginArgs ...string) (*engine, error) {
	tokenFile := filepath.Join(dir, "token")
	if err := os.WriteFile(tokenFile, []byte(token+"\n"), 0o600); err != nil {
		return nil, err
	}
	args := append([]string{"run", "--listen", "127.0.0.1:0", "--log-format", "json", "--token-file", tokenFile,
		"--protocol-version", strconv.Itoa(protocolVersion)}, strings.Fields(engineArgs)...)
	args = append(append(args, "--"), pluginArgs...)
	cmd := exec.Command(vmreBin, args...)
	if nofile > 0 {
		cmd = exec.Command("/bin/sh", append([]string{"-c", "ulimit -n " + strconv.Itoa(nofile) + ` && exec "$0" "$@"`, vmreBin}, args...)...)
	}
	stderr, err := cmd.StderrPipe()
	if err != nil {
		return nil, err
	}
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	e := &engine{cmd: cmd, addr: make(chan string, 1), running: make(chan struct{})}
	go func() {
		r := bufio.NewReaderSize(stderr, 1<<20)
		sentAddr, sentRunning := false, false
		for {
			line, err := r.ReadSlice('\n')
			e.logged.Add(int64(len(line)))
			if !sentAddr && bytes.Contains(line, []byte(`"api listening"`)) {
				var v struct{ Addr string }
				_ = json.Unmarshal(line, &v)
				e.addr <- v.Addr
				sentAddr = true
			}
			if !sentRunning && bytes.Contains(line, []byte(`"runtime running"`)) {
				close(e.running)
				sentRunning = true
			}
			if err != nil && !errors.Is(err, bufio.ErrBufferFull) {
				return
			}
		}
	}()
	select {
	case addr := <-e.addr:
		e.addr <- addr
	case <-time.After(time.Minute):
		e.stop()
		return nil, errors.New("vmre run did not listen within a minute")
	}
	select {
	case <-e.running:
	case <-time.After(time.Minute):
		e.stop()
		return nil, errors.New("the plugin did not run within a minute")
	}
	return e, nil
}

func (e *engine) url() string {
	a := <-e.addr
	e.addr <- a
	return "http://" + a
}

func (e *engine) stop() {
	_ = e.cmd.Process.Signal(syscall.SIGTERM)
	done := make(chan struct{})
	go func() { _ = e.cmd.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(30 * time.Second):
		_ = e.cmd.Process.Kill()
		<-done
	}
}

// rss is the engine process's resident set in bytes.
func (e *engine) rss() int64 {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", e.cmd.Process.Pid))
	if err != nil {
		return 0
	}
	for line := range strings.SplitSeq(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, "VmRSS:"); ok {
			kb, _ := strconv.ParseInt(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(v), "kB")), 10, 64)
			return kb << 10
		}
	}
	return 0
}

// cpu is the engine process's user and system CPU time so far.
func (e *engine) cpu() time.Duration {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", e.cmd.Process.Pid))
	if err != nil {
		return 0
	}
	// The fields after the command name, which is in parentheses.
	f := strings.Fields(string(b[bytes.LastIndexByte(b, ')')+1:]))
	if len(f) < 13 {
		return 0
	}
	utime, _ := strconv.ParseInt(f[11], 10, 64)
	stime, _ := strconv.ParseInt(f[12], 10, 64)
	return time.Duration(utime+stime) * 10 * time.Millisecond // USER_HZ is 100
}

// throughput is the engine's log bytes per second over d, with a flooding
// plugin the plugin's output throughput, and the engine's CPU time per MB
// of it: the cost of the output path, which a loaded machine disturbs
// less than the rate.
func (e *engine) throughput(d time.Duration) (perSec float64, cpuPerMB time.Duration) {
	n0, c0, t0 := e.logged.Load(), e.cpu(), time.Now()
	time.Sleep(d)
	n := e.logged.Load() - n0
	if n == 0 {
		return 0, 0
	}
	return float64(n) / time.Since(t0).Seconds(), (e.cpu() - c0) * 1e6 / time.Duration(n)
}

func h2cClient() *http.Client {
	var p http.Protocols
	p.SetUnencryptedHTTP2(true)
	return &http.Client{Transport: &http.Transport{Protocols: &p}}
}

// healthLatencies makes n health checks, each on a new connection as a
// probe does, with a 5 s timeout each, and returns their sorted latencies
// and how many failed.
func healthLatencies(url string, n int) ([]time.Duration, int) {
	var lat []time.Duration
	failed := 0
	for range n {
		c := h2cClient()
		hc := connect.NewClient[grpc_health_v1.HealthCheckRequest, grpc_health_v1.HealthCheckResponse](c,
			url+"/grpc.health.v1.Health/Check", connect.WithGRPC())
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		t0 := time.Now()
		_, err := hc.CallUnary(ctx, connect.NewRequest(&grpc_health_v1.HealthCheckRequest{}))
		d := time.Since(t0)
		cancel()
		c.CloseIdleConnections()
		if err != nil {
			failed++
			continue
		}
		lat = append(lat, d)
	}
	slices.Sort(lat)
	return lat, failed
}

func pct(lat []time.Duration, p int) string {
	if len(lat) == 0 {
		return "-"
	}
	return fmt.Sprintf("%.2f ms", float64(lat[(len(lat)-1)*p/100])/1e6)
}

func ms(d time.Duration) float64 { return float64(d) / 1e6 }

func mib(b int64) string { return fmt.Sprintf("%.1f MiB", float64(b)/(1<<20)) }

func attackStreams(o options, plugin, dir string) error {
	e, err := startEngine(dir, o.vmre, 0, o.engineArgs, plugin, "flood", strconv.FormatInt(1<<40, 10), "200")
	if err != nil {
		return err
	}
	defer e.stop()
	url := e.url()
	client := vmrev1connect.NewRuntimeServiceClient(h2cClient(), url, connect.WithGRPC())
	list, err := client.ListRuntimes(context.Background(), &vmrev1.ListRuntimesRequest{})
	if err != nil || len(list.GetRuntimes()) == 0 {
		return fmt.Errorf("list runtimes: %v %w", list, err)
	}
	id := list.GetRuntimes()[0].GetId()
	time.Sleep(o.settle) // the ring fills
	rss0 := e.rss()
	tput0, cpu0 := e.throughput(o.measure)
	lat0, fail0 := healthLatencies(url, 200)

	procedure := vmrev1connect.RuntimeServiceTailOutputProcedure
	var msg proto.Message = &vmrev1.TailOutputRequest{Id: id, Lines: uint32(o.lines), Follow: true}
	if o.call == "list" {
		procedure, msg = vmrev1connect.RuntimeServiceListRuntimesProcedure, &vmrev1.ListRuntimesRequest{}
	}
	req, err := proto.Marshal(msg)
	if err != nil {
		return err
	}
	host := strings.TrimPrefix(url, "http://")
	var conns []*h2raw.Conn
	perConn := (o.streams + o.streamConns - 1) / o.streamConns
	opened := 0
	for range o.streamConns {
		c, err := h2raw.Dial(host, 0, 4*perConn)
		if err != nil {
			return err
		}
		conns = append(conns, c)
		for i := 0; i < perConn && opened < o.streams; i++ {
			if _, err := c.OpenGRPC(host, procedure, req); err != nil {
				return err
			}
			opened++
		}
	}
	// Count the answers: trailers with a status are refusals, resets
	// calls the server ended (send timeout or call limit).
	var refused, reset atomic.Int64
	for _, c := range conns {
		go func() {
			for ev := range c.Events() {
				switch {
				case ev.Kind == "headers" && ev.GRPCStatus != "":
					refused.Add(1)
				case ev.Kind == "rst":
					reset.Add(1)
				}
			}
		}()
	}
	peak := int64(0)
	sample := func(d time.Duration) {
		for end := time.Now().Add(d); time.Now().Before(end); time.Sleep(100 * time.Millisecond) {
			peak = max(peak, e.rss())
		}
	}
	sample(o.settle)
	tput1, cpu1 := e.throughput(o.measure)
	peak = max(peak, e.rss())
	lat1, fail1 := healthLatencies(url, 200)
	peak = max(peak, e.rss())
	for _, c := range conns {
		_ = c.Close()
	}
	time.Sleep(o.after)
	rss2 := e.rss()
	tput2, cpu2 := e.throughput(o.measure)

	what := fmt.Sprintf("TailOutput streams (%d lines first)", o.lines)
	if o.call == "list" {
		what = "ListRuntimes calls"
	}
	fmt.Printf("### %d zero-window %s on %d connections, flooding plugin (200-byte lines)\n\n", o.streams, what, o.streamConns)
	fmt.Printf("| | before the attack | during | %v after disconnect |\n|---|---|---|---|\n", o.after)
	fmt.Printf("| engine RSS | %s | %s peak (+%s) | %s |\n", mib(rss0), mib(peak), mib(peak-rss0), mib(rss2))
	fmt.Printf("| health p50 / p99 (new connection each) | %s / %s | %s / %s | |\n", pct(lat0, 50), pct(lat0, 99), pct(lat1, 50), pct(lat1, 99))
	fmt.Printf("| health failures of 200 | %d | %d | |\n", fail0, fail1)
	fmt.Printf("| plugin output through the engine | %.1f MB/s | %.1f MB/s (x%.2f) | %.1f MB/s |\n", tput0/1e6, tput1/1e6, tput1/tput0, tput2/1e6)
	fmt.Printf("| engine CPU per MB of that output | %.1f ms | %.1f ms (x%.2f) | %.1f ms |\n", ms(cpu0), ms(cpu1), float64(cpu1)/float64(cpu0), ms(cpu2))
	fmt.Printf("| streams refused (resource_exhausted) / reset by the server | | %d / %d of %d | |\n\n", refused.Load(), reset.Load(), o.streams)
	return nil
}

func attackConns(o options, plugin, dir string) error {
	e, err := startEngine(dir, o.vmre, o.nofile, o.engineArgs, plugin, "serve")
	if err != nil {
		return err
	}
	defer e.stop()
	url := e.url()
	host := strings.TrimPrefix(url, "http://")
	lat0, fail0 := healthLatencies(url, 50)

	var conns []*h2raw.Conn
	defer func() {
		for _, c := range conns {
			_ = c.Close()
		}
	}()
	dialFailed := 0
	for range o.idleConns {
		c, err := h2raw.Dial(host, 65535, 4)
		if err != nil {
			dialFailed++
			continue
		}
		conns = append(conns, c)
	}
	// Let the server take or refuse them (bounded).
	bound := time.After(30 * time.Second)
	answered := 0
wait:
	for _, c := range conns {
		select {
		case <-c.Events():
			answered++
		case <-bound:
			break wait
		}
	}
	lat1, fail1 := healthLatencies(url, 50)
	client := vmrev1connect.NewRuntimeServiceClient(h2cClient(), url, connect.WithGRPC(),
		connect.WithInterceptors(connect.UnaryInterceptorFunc(func(next connect.UnaryFunc) connect.UnaryFunc {
			return func(ctx context.Context, req connect.AnyRequest) (connect.AnyResponse, error) {
				req.Header().Set("Authorization", "Bearer "+token)
				return next(ctx, req)
			}
		})))
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	t0 := time.Now()
	restart := "ok"
	list, err := client.ListRuntimes(ctx, &vmrev1.ListRuntimesRequest{})
	if err == nil && len(list.GetRuntimes()) > 0 {
		_, err = client.RestartRuntime(ctx, &vmrev1.RestartRuntimeRequest{Id: list.GetRuntimes()[0].GetId()})
	}
	if err != nil {
		restart = "failed: " + strings.ReplaceAll(err.Error(), "|", "/")
	}
	took := time.Since(t0)

	fmt.Printf("### %d idle HTTP/2 connections, vmre at %d descriptors\n\n", o.idleConns, o.nofile)
	fmt.Printf("| | before the flood | during |\n|---|---|---|\n")
	fmt.Printf("| health p50 / p99 (new connection each, 5 s timeout) | %s / %s | %s / %s |\n", pct(lat0, 50), pct(lat0, 99), pct(lat1, 50), pct(lat1, 99))
	fmt.Printf("| health failures of 50 | %d | %d |\n", fail0, fail1)
	fmt.Printf("| list + authorised restart (a relaunch), 30 s timeout | | %s in %.0f ms |\n", restart, float64(took)/1e6)
	fmt.Printf("| connections dialled / answered by the server | | %d / %d |\n\n", len(conns), answered)
	return nil
}
