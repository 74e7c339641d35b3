package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"runtime"
	"runtime/debug"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/ava-labs/avalanchego/utils/logging"
	avaruntime "github.com/ava-labs/avalanchego/vms/rpcchainvm/runtime"
	"github.com/vmre/vmre"
)

// memPoint is the engine process's own memory: live heap plus goroutine
// stacks after a full GC, and resident set size. Children are other
// processes and never counted.
type memPoint struct {
	heapStack int64
	rss       int64
}

// settle is how long a memory sample waits for the work a burst of
// launches or stops left running to end.
const settle = time.Second

func measureMem() memPoint {
	runtime.GC()
	debug.FreeOSMemory()
	var m runtime.MemStats
	runtime.ReadMemStats(&m)
	return memPoint{heapStack: int64(m.HeapAlloc + m.StackInuse), rss: rssBytes()}
}

// benchConcurrent launches N plugins at once and times until all have
// handshaken; with all N alive it measures the engine's memory per
// runtime; then it stops them all through each engine's Manager.
func benchConcurrent(ctx context.Context, e *env) error {
	const timeout = 60 * time.Second
	vm := newVmreEngine(e.ava, io.Discard, timeout, 5*time.Second)
	av := newAvaEngine(e.ava, logging.Discard, timeout)
	// The plugin's own Initialize deadline, the same under both engines:
	// vmre's plugins inherit it from this process's environment,
	// avalanchego's, which inherit none of it, get it from cmd.Env. With
	// avalanchego's 5 s, its launches fail by the hundred at N=500 (it
	// answers too late) and then wait out its handshake timeout: a round's
	// CPU then covers fewer handshakes, and stops and a minute of idling
	// that vmre's rounds do not have.
	deadline := "AVAPLUGIN_INITIALIZE_TIMEOUT=" + e.o.concDeadline.String()
	av.env = []string{deadline}
	restore := setenv("AVAPLUGIN_INITIALIZE_TIMEOUT", e.o.concDeadline.String())
	defer restore()

	for _, n := range e.o.concs {
		all := newRow(fmt.Sprintf("%d concurrent launches -> all handshaken", n), "ms")
		heap := newRow(fmt.Sprintf("  engine heap+stacks per live runtime (N=%d)", n), "KiB")
		rss := newRow(fmt.Sprintf("  engine RSS per live runtime (N=%d)", n), "KiB")
		stopAll := newRow(fmt.Sprintf("  Manager.Stop of all %d (cooperative)", n), "ms")
		engCPU := newRow(fmt.Sprintf("  engine CPU per launch, launch phase (user+sys of the engine process from the first launch to 1 s after the last handshake, N=%d)", n), "ms")
		plugCPU := newRow(fmt.Sprintf("  plugin CPU per plugin, whole life (user+sys of the reaped children, N=%d)", n), "ms")

		failedRow := newRow(fmt.Sprintf("  failed launches (N=%d)", n), "count")

		// round launches n plugins with launch, tracking each in a fresh
		// Manager of the engine (newManager), and records column col. A
		// launch that fails (with -conc-plugin-deadline 5s, avalanchego's
		// plugin gives up on its own Initialize when hundreds start at
		// once on few cores) is counted in the failed row and noted; the
		// CPU is still per attempted launch, the memory per runtime left
		// alive, and the time to all handshaken is not recorded for such a
		// round.
		round := func(col, name string, newManager func() manager, launch func() (tracked, error)) {
			m0 := measureMem()
			mgr := newManager()
			var stopProfile func()
			if e.o.concProfile != "" {
				path := filepath.Join(e.o.concProfile, fmt.Sprintf("%s-%d-%d.prof", name, n, time.Now().UnixNano()))
				err := os.MkdirAll(e.o.concProfile, 0o755)
				if err == nil {
					stopProfile, err = startCPUProfile(path)
				}
				if err != nil {
					e.note("conc profile: %s", err.Error())
				}
			}
			perfCtl(e, "enable")
			self0, kids0 := cpuTimes()
			t0 := time.Now()
			failed, first := launchN(n, func() error {
				p, err := launch()
				if err == nil {
					mgr.track(p)
				}
				return err
			})
			d := time.Since(t0)
			// A launch is over, for its CPU and for what a live runtime
			// keeps, once its handshake server is gone: avalanchego's
			// Bootstrap stops that server before it returns, vmre's
			// returns first and shuts the server down on a goroutine of
			// its own. So both are measured a settling time later.
			time.Sleep(settle)
			self1, _ := cpuTimes()
			perfCtl(e, "disable")
			if stopProfile != nil {
				stopProfile()
			}
			m1 := measureMem()
			t1 := time.Now()
			mgr.stop(ctx)
			ds := time.Since(t1)
			_, kids1 := cpuTimes()
			// Every engine's baseline is taken once the previous
			// engine's exits have settled, not only the first engine's
			// of a round: an engine measured right after the other's
			// Stop came out higher.
			time.Sleep(settle)
			failedRow.add(col, float64(failed))
			if failed > 0 {
				e.note("conc %d, %s: %d of %d launches failed, first: %s", n, name, failed, n, first.Error())
			} else {
				all.add(col, ms(d))
			}
			engCPU.add(col, ms(self1-self0)/float64(n))
			plugCPU.add(col, ms(kids1-kids0)/float64(n))
			if alive := n - failed; alive > 0 {
				heap.add(col, float64(m1.heapStack-m0.heapStack)/float64(alive)/1024)
				rss.add(col, float64(m1.rss-m0.rss)/float64(alive)/1024)
			}
			stopAll.add(col, ms(ds))
		}
		runVmre := func() error {
			round(colVmre, "vmre",
				func() manager { return vmreManager{vmre.NewManager()} },
				func() (tracked, error) { p, _, err := vm.launch(ctx, "serve"); return p, err })
			return nil
		}
		runAva := func() error {
			round(colAva, "avalanchego",
				func() manager { return avaManager{avaruntime.NewManager()} },
				func() (tracked, error) { s, _, err := av.launch(ctx, "serve"); return s, err })
			return nil
		}
		var runs []func() error
		for _, name := range strings.Split(e.o.concEngines, ",") {
			switch strings.TrimSpace(name) {
			case colVmre:
				runs = append(runs, runVmre)
			case colAva:
				runs = append(runs, runAva)
			default:
				return fmt.Errorf("-conc-engines: unknown engine %q (vmre, avalanchego)", name)
			}
		}
		for i := range e.o.concRounds {
			if err := rotate(i, runs...); err != nil {
				return err
			}
			e.progress("conc %d: round %d/%d", n, i+1, e.o.concRounds)
		}
		all.check("vmre/ava <= 0.8", all.ratio(colAva) <= 0.8)
		heap.check("<= 64 KiB", heap.p50(colVmre) <= 64)
		engCPU.check("vmre/ava <= 1.0", engCPU.ratio(colAva) <= 1.0)
		rss.check("vmre/ava <= 1.0", rss.ratio(colAva) <= 1.0)
		e.rows = append(e.rows, all, engCPU, plugCPU, heap, rss, stopAll, failedRow)
	}
	return nil
}

// setenv sets key in this process's environment and returns the function
// that restores it.
func setenv(key, value string) (restore func()) {
	old, had := os.LookupEnv(key)
	_ = os.Setenv(key, value)
	return func() {
		if had {
			_ = os.Setenv(key, old)
		} else {
			_ = os.Unsetenv(key)
		}
	}
}

// launchN runs f n times concurrently and returns how many calls failed
// and the first error.
func launchN(n int, f func() error) (failed int, first error) {
	var wg sync.WaitGroup
	var mu sync.Mutex
	for range n {
		wg.Go(func() {
			if err := f(); err != nil {
				mu.Lock()
				failed++
				if first == nil {
					first = err
				}
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	return failed, first
}

// cpuTimes returns the user+system CPU time of this process and of its
// reaped children.
func cpuTimes() (self, children time.Duration) {
	var ru syscall.Rusage
	if syscall.Getrusage(syscall.RUSAGE_SELF, &ru) == nil {
		self = time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
	}
	if syscall.Getrusage(syscall.RUSAGE_CHILDREN, &ru) == nil {
		children = time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
	}
	return self, children
}

// tracked is a launched plugin as either engine's Manager takes it.
type tracked any

// manager hides the two engines' Manager types behind one shape.
type manager interface {
	track(p tracked)
	stop(ctx context.Context)
}

type vmreManager struct{ m vmre.Manager }

func (v vmreManager) track(p tracked)          { v.m.TrackRuntime(p.(vmre.Stopper)) }
func (v vmreManager) stop(ctx context.Context) { v.m.Stop(ctx) }

type avaManager struct{ m avaruntime.Manager }

func (a avaManager) track(p tracked)          { a.m.TrackRuntime(p.(avaruntime.Stopper)) }
func (a avaManager) stop(ctx context.Context) { a.m.Stop(ctx) }

// perfCtl sends cmd ("enable", "disable") to the control FIFO of a
// `perf record --control fifo:PATH -D -1` run of this process named by
// -conc-perf-ctl, so that perf samples only the launch phases.
func perfCtl(e *env, cmd string) {
	if e.o.concPerfCtl == "" {
		return
	}
	f, err := os.OpenFile(e.o.concPerfCtl, os.O_WRONLY, 0)
	if err != nil {
		e.note("conc perf control: %s", err.Error())
		return
	}
	defer f.Close()
	if _, err := f.WriteString(cmd + "\n"); err != nil {
		e.note("conc perf control: %s", err.Error())
	}
}
