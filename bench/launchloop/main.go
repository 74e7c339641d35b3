// Command launchloop launches and stops a plugin in a plain loop, a few at
// a time, with vmre's subprocess.Bootstrap or avalanchego's, and nothing
// else: the program to count an engine's instructions per launch with
// cachegrind, whose counts the machine's load does not change. Run it
// twice with different -rounds and divide the difference by the launches
// between them; everything else (start-up, the first launch's set-up)
// cancels out:
//
//	AVAPLUGIN_INITIALIZE_TIMEOUT=1m GODEBUG=cpu.rdtscp=off valgrind --tool=cachegrind --cache-sim=no \
//	  --cachegrind-out-file=/dev/null launchloop -engine vmre -plugin avaplugin -rounds 10
//
// With -settle, each round's plugins are stopped only after that long,
// once their handshake servers have shut down on their own, as a
// long-lived launch's do (docs/benchmarks-launch.md measures vmre's
// handshake server with -conc 4 -settle 1.5s); without it they are
// stopped at once, which cuts the handshake server's shutdown short.
package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"os"
	"sync"
	"time"

	"github.com/ava-labs/avalanchego/utils/logging"
	"github.com/ava-labs/avalanchego/vms/rpcchainvm/grpcutils"
	avasub "github.com/ava-labs/avalanchego/vms/rpcchainvm/runtime/subprocess"
	"github.com/rs/zerolog"
	"github.com/vmre/vmre/logtime"
	"github.com/vmre/vmre/subprocess"
)

func main() {
	engine := flag.String("engine", "vmre", "vmre or avalanchego")
	plugin := flag.String("plugin", "", "the avaplugin binary (required)")
	rounds := flag.Int("rounds", 10, "rounds of -conc concurrent launches, each stopped before the next round")
	conc := flag.Int("conc", 4, "concurrent launches per round")
	settle := flag.Duration("settle", 0, "how long to wait after a round's launches before stopping them")
	flag.Parse()
	if *plugin == "" {
		fmt.Fprintln(os.Stderr, "launchloop: -plugin is required")
		os.Exit(2)
	}
	var launch func(ctx context.Context) (func(context.Context), error)
	switch *engine {
	case "vmre":
		log := zerolog.New(io.Discard).Level(zerolog.InfoLevel).Hook(&logtime.Hook{})
		launch = func(ctx context.Context) (func(context.Context), error) {
			p, err := subprocess.Bootstrap(ctx, subprocess.NewCmd(*plugin, "serve"), &subprocess.Config{
				Name: "loop", Log: log, AcceptedVersions: []uint32{46}, HandshakeTimeout: time.Minute,
			})
			if err != nil {
				return nil, err
			}
			return func(ctx context.Context) { p.Stop(ctx) }, nil
		}
	case "avalanchego":
		log := logging.NewLogger("", logging.NewWrappedCore(logging.Info, nopCloser{io.Discard}, logging.JSON.FileEncoder()))
		launch = func(ctx context.Context) (func(context.Context), error) {
			lis, err := grpcutils.NewListener()
			if err != nil {
				return nil, err
			}
			_, s, err := avasub.Bootstrap(ctx, lis, avasub.NewCmd(*plugin, "serve"), &avasub.Config{
				Stderr: log, Stdout: log, Log: log, HandshakeTimeout: time.Minute,
			})
			if err != nil {
				return nil, err
			}
			return s.Stop, nil
		}
	default:
		fmt.Fprintf(os.Stderr, "launchloop: unknown engine %q\n", *engine)
		os.Exit(2)
	}
	ctx := context.Background()
	for r := range *rounds {
		stops := make([]func(context.Context), *conc)
		var wg sync.WaitGroup
		for i := range *conc {
			wg.Go(func() {
				stop, err := launch(ctx)
				if err != nil {
					fmt.Fprintf(os.Stderr, "launchloop: round %d: %v\n", r, err)
					os.Exit(1)
				}
				stops[i] = stop
			})
		}
		wg.Wait()
		time.Sleep(*settle)
		for _, stop := range stops {
			wg.Go(func() { stop(ctx) })
		}
		wg.Wait()
	}
}

type nopCloser struct{ io.Writer }

func (nopCloser) Close() error { return nil }
