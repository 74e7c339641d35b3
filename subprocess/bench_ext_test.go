//go:build linux

package subprocess_test

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"testing"
	"time"

	"github.com/rs/zerolog"
	"github.com/vmre/vmre/subprocess"
)

// BenchmarkLaunch measures launch -> handshake done (Bootstrap's latency)
// of the test binary as plugin, against the floor: fork/exec/wait of the
// same binary exiting at once. Stopping is not timed.
func BenchmarkLaunch(b *testing.B) {
	b.Run("floor", func(b *testing.B) {
		var times []time.Duration
		for range b.N {
			cmd := childCmd(b, "exit0")
			start := time.Now()
			if err := cmd.Run(); err != nil {
				b.Fatal(err)
			}
			times = append(times, time.Since(start))
		}
		reportPercentiles(b, times)
	})
	b.Run("bootstrap", func(b *testing.B) {
		var times []time.Duration
		for range b.N {
			cmd := childCmd(b, "serve")
			start := time.Now()
			p, err := subprocess.Bootstrap(context.Background(), cmd, nil)
			if err != nil {
				b.Fatal(err)
			}
			times = append(times, time.Since(start))
			p.Stop(context.Background())
		}
		reportPercentiles(b, times)
	})
}

func reportPercentiles(b *testing.B, times []time.Duration) {
	slices.Sort(times)
	b.ReportMetric(float64(times[len(times)/2].Microseconds()), "p50-µs")
	b.ReportMetric(float64(times[len(times)*99/100].Microseconds()), "p99-µs")
}

// BenchmarkFlood runs a plugin writing 200 MiB of lines through Bootstrap's
// bridge into a zerolog JSON log (with timestamps) in a file, unbuffered
// (one write per line) or through a 1 MiB buffer, or into io.Discard. MB/s is the plugin's
// output rate, from launch to Done. The "discard" sink shows the bridge
// and zerolog without the file system.
func BenchmarkFlood(b *testing.B) {
	const total = 200 << 20
	for _, lineSize := range []int{128, 1024} {
		for _, sink := range []string{"file", "buffered-file", "discard"} {
			b.Run(fmt.Sprintf("%dB/%s", lineSize, sink), func(b *testing.B) {
				lines := total / lineSize
				b.SetBytes(int64(lines * lineSize))
				for range b.N {
					f, err := os.Create(filepath.Join(b.TempDir(), "log"))
					if err != nil {
						b.Fatal(err)
					}
					bw := bufio.NewWriterSize(f, 1<<20)
					var w io.Writer
					switch sink {
					case "file":
						w = f
					case "buffered-file":
						w = bw
					default:
						w = io.Discard
					}
					cfg := &subprocess.Config{
						Log: zerolog.New(w).Level(zerolog.InfoLevel).With().Timestamp().Logger(),
					}
					p, err := subprocess.Bootstrap(context.Background(), childCmd(b, "flood", fmt.Sprintf("%s=%d,%d", floodEnv, lines, lineSize)), cfg)
					if err != nil {
						b.Fatal(err)
					}
					<-p.Done()
					if err := bw.Flush(); err != nil {
						b.Fatal(err)
					}
					f.Close()
				}
			})
		}
	}
}

// BenchmarkMemoryPerRuntime reports the engine's own memory (Go heap and
// goroutine stacks, children excluded) per live, handshaken runtime, with
// 100 plugins running. Handshake servers still shutting down are counted,
// so this is an upper bound.
func BenchmarkMemoryPerRuntime(b *testing.B) {
	const n = 100
	for range b.N {
		var before, after runtime.MemStats
		runtime.GC()
		runtime.ReadMemStats(&before)
		procs := make([]*subprocess.Process, 0, n)
		for range n {
			p, err := subprocess.Bootstrap(context.Background(), childCmd(b, "serve"), &subprocess.Config{HandshakeTimeout: time.Minute})
			if err != nil {
				b.Fatal(err)
			}
			procs = append(procs, p)
		}
		runtime.GC()
		runtime.ReadMemStats(&after)
		perRuntime := (int64(after.HeapInuse+after.StackInuse) - int64(before.HeapInuse+before.StackInuse)) / n
		b.ReportMetric(float64(perRuntime), "B/runtime")
		for _, p := range procs {
			p.Stop(context.Background())
		}
	}
}
