// Command floodloop runs the flood benchmark's vmre side and nothing else:
// the flood plugin launched with subprocess.Bootstrap, its lines logged by
// zerolog with logtime.Hook into a 256 KiB buffered file writer, -rounds
// floods one after the other. It is the program to profile the bridge
// with perf, or to count its instructions per line: run it twice with
// different -rounds and divide the difference by the lines between them,
// so that start-up and the first flood's set-up cancel out (valgrind
// runs only this process; the plugin runs natively):
//
//	GODEBUG=cpu.rdtscp=off valgrind --tool=cachegrind --cache-sim=no floodloop -plugin avaplugin -rounds 3
//
// -engine floor runs the benchmark's floor engine instead (constant JSON
// framing per line, nothing parsed), for the same comparison.
package main

import (
	"bufio"
	"context"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"runtime"
	"runtime/pprof"
	"strconv"
	"sync"
	"syscall"
	"time"

	"github.com/rs/zerolog"
	"github.com/vmre/vmre/bench/floor"
	"github.com/vmre/vmre/logtime"
	"github.com/vmre/vmre/subprocess"
)

func main() {
	engine := flag.String("engine", "vmre", "vmre or floor")
	plugin := flag.String("plugin", "", "the avaplugin binary (required)")
	rounds := flag.Int("rounds", 4, "floods, one after the other")
	size := flag.Int64("bytes", 64<<20, "bytes per flood")
	lineLen := flag.Int("line", 1024, "line length, newline included")
	format := flag.String("format", "zap-console", "the flood plugin's line format")
	out := flag.String("out", "/dev/shm/floodloop.log", "the log file (truncated per flood)")
	keep := flag.Bool("keep", false, "keep the log file")
	memProfile := flag.String("memprofile", "", "write a profile of every allocation to this file")
	flag.Parse()
	if *memProfile != "" {
		runtime.MemProfileRate = 1
	}
	if *plugin == "" {
		fmt.Fprintln(os.Stderr, "floodloop: -plugin is required")
		os.Exit(2)
	}
	args := []string{strconv.FormatInt(*size, 10), strconv.Itoa(*lineLen), *format}
	ctx := context.Background()
	var ru0 syscall.Rusage
	_ = syscall.Getrusage(syscall.RUSAGE_SELF, &ru0)
	t0 := time.Now()
	if !*keep {
		defer os.Remove(*out)
	}
	for r := range *rounds {
		f, err := os.Create(*out)
		if err != nil {
			fail(err)
		}
		w := &lockedWriter{bw: bufio.NewWriterSize(f, 256<<10)}
		switch *engine {
		case "vmre":
			log := zerolog.New(w).Level(zerolog.InfoLevel).Hook(&logtime.Hook{})
			p, err := subprocess.Bootstrap(ctx, subprocess.NewCmd(*plugin, append([]string{"flood"}, args...)...), &subprocess.Config{
				Name: "bench", Log: log, AcceptedVersions: []uint32{46}, HandshakeTimeout: time.Minute, GracefulTimeout: 5 * time.Second,
			})
			if err != nil {
				fail(fmt.Errorf("round %d: %w", r, err))
			}
			<-p.Done()
			p.Stop(ctx)
		case "floor":
			cmd := exec.Command(*plugin, append([]string{"flood-raw"}, args...)...)
			pipe, pw, err := floor.Pipe()
			if err != nil {
				fail(err)
			}
			cmd.Stdout = pw
			err = cmd.Start()
			pw.Close()
			if err != nil {
				fail(err)
			}
			floor.Lines(pipe, w)
			if err := cmd.Wait(); err != nil {
				fail(err)
			}
			pipe.Close()
		default:
			fail(fmt.Errorf("unknown engine %q", *engine))
		}
		_ = w.bw.Flush()
		_ = f.Close()
	}
	var ru syscall.Rusage
	_ = syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	if *memProfile != "" {
		f, err := os.Create(*memProfile)
		if err != nil {
			fail(err)
		}
		if err := pprof.Lookup("allocs").WriteTo(f, 0); err != nil {
			fail(err)
		}
		f.Close()
	}
	lines := float64(*rounds) * float64(*size/int64(*lineLen))
	var ch syscall.Rusage
	_ = syscall.Getrusage(syscall.RUSAGE_CHILDREN, &ch)
	fmt.Printf("%s: %.0f lines, per line: user %.0f ns, sys %.0f ns, wall %.0f ns; the plugin's user+sys %.0f ns; peak RSS %.1f MiB\n", *engine, lines,
		float64(ru.Utime.Nano()-ru0.Utime.Nano())/lines, float64(ru.Stime.Nano()-ru0.Stime.Nano())/lines,
		float64(time.Since(t0).Nanoseconds())/lines, float64(ch.Utime.Nano()+ch.Stime.Nano())/lines, float64(ru.Maxrss)/1024)
}

func fail(err error) {
	fmt.Fprintln(os.Stderr, "floodloop:", err)
	os.Exit(1)
}

type lockedWriter struct {
	mu sync.Mutex
	bw *bufio.Writer
}

func (l *lockedWriter) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.bw.Write(p)
}
