package main

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"connectrpc.com/connect"
	vmrev1 "github.com/vmre/vmre/gen/vmre/v1"
	"github.com/vmre/vmre/gen/vmre/v1/vmrev1connect"
)

// watchers is a set of WatchRuntimes streams and what they received: the
// latency of every change (its arrival minus the engine's server_time) and
// the snapshots that came instead of changes (resyncs).
type watchers struct {
	want    int64
	allIn   chan struct{} // closed when want changes have arrived
	cancel  context.CancelFunc
	running sync.WaitGroup

	mu        sync.Mutex
	lat       sample
	resyncs   atomic.Int64
	delivered atomic.Int64
}

// startWatchers opens n streams on the API at base and returns once every
// one has its first message (the snapshot), ready for want changes in all.
func startWatchers(ctx context.Context, base string, n int, want int64, proto string, offerGzip bool) (*watchers, error) {
	var client *http.Client
	var opts []connect.ClientOption
	switch proto {
	case "grpcweb":
		client = &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: n, MaxConnsPerHost: 0}}
		opts = append(opts, connect.WithGRPCWeb())
	case "grpc":
		var p http.Protocols
		p.SetUnencryptedHTTP2(true)
		client = &http.Client{Transport: &http.Transport{Protocols: &p}}
		opts = append(opts, connect.WithGRPC())
	default:
		return nil, fmt.Errorf("-watch-proto %q: want grpcweb or grpc", proto)
	}
	if !offerGzip {
		// The watchers do not offer gzip, so the server sends plain
		// messages (what a server-side compression threshold would do).
		opts = append(opts, connect.WithAcceptCompression("gzip", nil, nil))
	}
	rpc := vmrev1connect.NewRuntimeServiceClient(client, base, opts...)

	wctx, cancel := context.WithCancel(ctx)
	w := &watchers{want: want, allIn: make(chan struct{}), cancel: cancel}
	var (
		ready    sync.WaitGroup
		errMu    sync.Mutex
		firstErr error
	)
	ready.Add(n)
	for range n {
		w.running.Go(func() {
			stream, err := rpc.WatchRuntimes(wctx, &vmrev1.WatchRuntimesRequest{})
			if err != nil {
				errMu.Lock()
				firstErr = errors.Join(firstErr, err)
				errMu.Unlock()
				ready.Done()
				return
			}
			defer stream.Close()
			first := true
			local := make(sample, 0, int(want)/max(n, 1)+4)
			for stream.Receive() {
				now := time.Now()
				msg := stream.Msg()
				if first {
					first = false
					ready.Done()
					continue
				}
				if msg.GetSnapshot() != nil {
					w.resyncs.Add(1)
					continue
				}
				local = append(local, ms(now.Sub(msg.GetServerTime().AsTime())))
				if w.delivered.Add(1) == want {
					close(w.allIn)
				}
			}
			w.mu.Lock()
			w.lat = append(w.lat, local...)
			w.mu.Unlock()
		})
	}
	ready.Wait()
	if firstErr != nil {
		w.stop()
		return nil, firstErr
	}
	return w, nil
}

// stop closes every stream and waits for the watchers to record theirs.
func (w *watchers) stop() {
	w.cancel()
	w.running.Wait()
}

// watchClientMain runs the watchers of -watch-where process: a separate
// process, as a browser's dashboard is. It prints "ready" once every
// stream has its snapshot; it then collects until all changes arrived or
// its stdin closes, and prints "resyncs N" and one "lat MS" line per
// delivery.
func watchClientMain(base string, n int, want int64, proto string, offerGzip bool) error {
	w, err := startWatchers(context.Background(), base, n, want, proto, offerGzip)
	if err != nil {
		return err
	}
	fmt.Println("ready")
	stdinClosed := make(chan struct{})
	go func() {
		_, _ = io.Copy(io.Discard, os.Stdin)
		close(stdinClosed)
	}()
	select {
	case <-w.allIn:
	case <-stdinClosed:
	}
	w.stop()
	out := bufio.NewWriter(os.Stdout)
	fmt.Fprintf(out, "resyncs %d\n", w.resyncs.Load())
	for _, v := range w.lat {
		fmt.Fprintf(out, "lat %g\n", v)
	}
	return out.Flush()
}

// watcherProcess is the parent's handle on a watchClientMain process.
type watcherProcess struct {
	cmd    *exec.Cmd
	stdin  io.WriteCloser
	stdout *bufio.Scanner
}

// startWatcherProcess re-runs this binary as a watcher client and waits
// for its "ready".
func startWatcherProcess(ctx context.Context, base string, n int, want int64, proto string, offerGzip bool) (*watcherProcess, error) {
	gz := "no"
	if offerGzip {
		gz = "yes"
	}
	cmd := exec.CommandContext(ctx, os.Args[0], "-watch-client-of", base, "-watchers", strconv.Itoa(n),
		"-watch-want", strconv.FormatInt(want, 10), "-watch-proto", proto, "-watch-gzip", gz)
	cmd.Stderr = os.Stderr
	stdin, err := cmd.StdinPipe()
	if err != nil {
		return nil, err
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		return nil, err
	}
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	p := &watcherProcess{cmd: cmd, stdin: stdin, stdout: bufio.NewScanner(stdout)}
	if !p.stdout.Scan() || p.stdout.Text() != "ready" {
		_ = stdin.Close()
		_ = cmd.Wait()
		return nil, fmt.Errorf("watcher process did not get ready (%q)", p.stdout.Text())
	}
	return p, nil
}

// finish waits up to timeout for the watchers to have every change, tells
// them to stop if they have not, and returns what they received.
func (p *watcherProcess) finish(timeout time.Duration) (sample, int64, error) {
	exited := make(chan error, 1)
	var lat sample
	var resyncs int64
	go func() {
		for p.stdout.Scan() {
			f := strings.Fields(p.stdout.Text())
			if len(f) != 2 {
				continue
			}
			switch f[0] {
			case "resyncs":
				resyncs, _ = strconv.ParseInt(f[1], 10, 64)
			case "lat":
				if v, err := strconv.ParseFloat(f[1], 64); err == nil {
					lat = append(lat, v)
				}
			}
		}
		exited <- p.cmd.Wait()
	}()
	var err error
	select {
	case err = <-exited:
	case <-time.After(timeout):
		_ = p.stdin.Close()
		err = <-exited
	}
	_ = p.stdin.Close()
	return lat, resyncs, err
}
