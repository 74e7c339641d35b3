package main

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"github.com/vmre/vmre/bench/floor"
	"io"
	"math"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"runtime/debug"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/hashicorp/go-plugin"
)

var floodMarker = []byte("~flood~ ")

// meter wraps the sink of avalanchego's raw copy. It records the time of
// the first write and, once the expected number of bytes has gone
// through, the time of the last and closes done.
type meter struct {
	w     io.Writer
	want  int64
	n     atomic.Int64
	first atomic.Int64
	last  atomic.Int64
	once  sync.Once
	done  chan struct{}
}

func newMeter(w io.Writer, want int64) *meter {
	return &meter{w: w, want: want, done: make(chan struct{})}
}

func (m *meter) Write(p []byte) (int, error) {
	if m.first.Load() == 0 {
		m.first.CompareAndSwap(0, time.Now().UnixNano())
	}
	n, err := m.w.Write(p)
	if m.n.Add(int64(n)) >= m.want {
		m.last.Store(time.Now().UnixNano())
		m.once.Do(func() { close(m.done) })
	}
	return n, err
}

func (m *meter) Close() error { return nil }

func (m *meter) elapsed() time.Duration { return time.Duration(m.last.Load() - m.first.Load()) }

// lateFile is the avalanchego flood's log file. avalanchego's Stop does not
// wait for the goroutines that copy the plugin's output, so the plugin's
// last lines (after the counted payload) can arrive once the run has
// closed the file; they are dropped rather than making its logger print
// write errors.
type lateFile struct {
	mu     sync.Mutex
	f      *os.File
	closed bool
}

func (l *lateFile) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.closed {
		return len(p), nil
	}
	return l.f.Write(p)
}

func (l *lateFile) Close() error {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.closed = true
	return l.f.Close()
}

// lineMeter wraps a sink whose writes are whole log records, as vmre's,
// the floor's and go-plugin's are: it times a flood from the write of the
// record of its first line to that of its last, flushed into the file
// (flush, when the sink buffers), as meter times avalanchego's copy from
// its first byte to its last. Records before the first flood line (the
// engine's handshake record) are not timed; after it, every record is
// counted, and from the want-th on each is checked for the last line's
// number, so a record that is not a flood line (go-plugin's host logs
// its own) only moves the check one record on. done closes at the last.
type lineMeter struct {
	w           io.Writer
	want        int64
	lastLine    []byte
	flush       func() error
	n           atomic.Int64
	first, last atomic.Int64
	once        sync.Once
	done        chan struct{}
}

// newLineMeter meters want flood lines written to w; flush, if not nil,
// puts what w buffers into the file.
func newLineMeter(w io.Writer, want int64, flush func() error) *lineMeter {
	return &lineMeter{
		w: w, want: want, flush: flush, done: make(chan struct{}),
		lastLine: fmt.Appendf(nil, "%s%09d ", floodMarker, want-1),
	}
}

func (m *lineMeter) Write(p []byte) (int, error) {
	if m.first.Load() == 0 {
		if !bytes.Contains(p, floodMarker) {
			return m.w.Write(p)
		}
		m.first.Store(time.Now().UnixNano())
	}
	n, err := m.w.Write(p)
	if m.n.Add(1) >= m.want && m.last.Load() == 0 && bytes.Contains(p, m.lastLine) {
		if m.flush != nil {
			if ferr := m.flush(); err == nil {
				err = ferr
			}
		}
		m.last.Store(time.Now().UnixNano())
		m.once.Do(func() { close(m.done) })
	}
	return n, err
}

func (m *lineMeter) Close() error { return nil }

// elapsed is the time from the first flood line to the last; 0 if the
// last has not been written.
func (m *lineMeter) elapsed() time.Duration {
	if m.last.Load() == 0 {
		return 0
	}
	return time.Duration(m.last.Load() - m.first.Load())
}

// checkFloodFile reads a log file and checks that the flood lines 0..n-1
// are all there, in order. It returns how many are missing.
func checkFloodFile(path string, n int64) (int64, error) {
	f, err := os.Open(path)
	if err != nil {
		return 0, err
	}
	defer f.Close()
	r := bufio.NewReaderSize(f, 1<<20)
	var next int64
	for {
		line, err := r.ReadSlice('\n')
		if i := bytes.Index(line, floodMarker); i >= 0 && len(line) >= i+len(floodMarker)+9 {
			seq, perr := strconv.ParseInt(string(line[i+len(floodMarker):i+len(floodMarker)+9]), 10, 64)
			if perr == nil {
				if seq != next {
					return 0, fmt.Errorf("%s: line %d where %d was expected", path, seq, next)
				}
				next++
			}
		}
		if errors.Is(err, bufio.ErrBufferFull) {
			for errors.Is(err, bufio.ErrBufferFull) {
				_, err = r.ReadSlice('\n')
			}
		}
		if err == io.EOF {
			break
		}
		if err != nil {
			return 0, err
		}
	}
	return n - next, nil
}

// benchFlood measures the output bridge: a plugin that, once handshaken,
// writes floodBytes of numbered lines on stdout. vmre turns every line into
// a zerolog JSON event written to a file; avalanchego copies the raw bytes
// into its file logger (the VM logger's Write); the floor is an engine
// that frames each line in constant JSON and parses nothing (package floor). Throughput counts plugin payload
// bytes from the first write reaching the sink to the last.
func benchFlood(ctx context.Context, e *env) error {
	e.notes = append(e.notes, fmt.Sprintf("output bridge: the log files are written under %s (-flood-dir; /dev/shm by default, so that this machine's disk writeback is not in the numbers)", e.floodDir))
	for _, fl := range floodCases(&e.o) {
		lineLen, format := fl.lineLen, fl.format
		lines := e.o.floodBytes / int64(lineLen)
		payload := lines * int64(lineLen)
		args := []string{strconv.FormatInt(payload, 10), strconv.Itoa(lineLen), format}
		tput := newRow(fmt.Sprintf("output bridge, %d MiB of %d-byte %s lines -> file (floor: each line in constant JSON framing, nothing parsed -> the same buffered writer)", payload>>20, lineLen, format), "MiB/s")
		tput.higherBetter = true
		tput.metric += "; vmre: zerolog JSON, time by logtime.Hook -> 256 KiB buffered file writer flushed every 100 ms (the bench's; `vmre run` logs through logsink.Writer); avalanchego: the raw bytes -> *os.File, one write(2) per 32 KiB read"
		tputUnbuf := newRow("  the same, vmre: zerolog JSON -> *os.File (one write(2) per line)", "MiB/s")
		tputUnbuf.higherBetter = true
		tputCmd := newRow("  the same, through the `vmre run` command: engine and output ring, its own batched JSON log on stderr -> file (timed from start, the launch included, until the log says the plugin exited)", "MiB/s")
		tputCmd.higherBetter = true
		cpuCmd := newRow("  the same, `vmre run` process CPU per line, the plugin excluded: user+sys of its wait4 rusage (whole life, launch and shutdown included; it counts the children it reaped, the plugin) minus the plugin's, read as cutime+cstime in /proc/PID/stat once the log says the plugin exited (10 ms ticks: up to 10 ms / lines too high)", "ns")
		lost := newRow(fmt.Sprintf("  lines lost of %d (every run, all vmre sinks)", lines), "lines")
		rate := newRow("  the same, buffered file: lines/s (millions)", "M lines/s")
		rate.higherBetter = true
		cpu := newRow("  engine CPU per line (user+sys of this process over the buffered run; the plugin's excluded)", "ns")
		above := newRow("  vmre's CPU per line above the floor's (p50 minus p50): the bridge's own work, parsing, zerolog, the engine", "ns")
		rss := newRow("  memory while flooding: peak RSS growth of this process over the buffered run (high-water mark minus RSS at its start; vmre and avalanchego run in it)", "MiB")
		rssCmd := newRow("  memory while flooding: peak RSS of the `vmre run` process (maxrss from wait4, whole life: the larger of its own peak and that of the plugin it reaped)", "MiB")

		runVmre := func(buffered bool) error {
			path := filepath.Join(e.floodDir, "flood-vmre.log")
			f, err := os.Create(path)
			if err != nil {
				return err
			}
			defer os.Remove(path)
			var sink io.Writer = f
			var bw *flushingWriter
			var flush func() error
			if buffered {
				bw = newFlushingWriter(f, 256<<10, 100*time.Millisecond)
				sink, flush = bw, bw.Flush
			}
			m := newLineMeter(sink, lines, flush)
			vm := newVmreEngine(e.ava, m, 10*time.Second, 5*time.Second)
			rss0, rssOK := startPeakRSS()
			cpu0 := processCPU()
			p, _, err := vm.launch(ctx, append([]string{"flood"}, args...)...)
			if err != nil {
				f.Close()
				return fmt.Errorf("vmre flood launch: %w", err)
			}
			select {
			case <-p.Done():
			case <-time.After(5 * time.Minute):
				return errors.New("vmre flood: plugin did not finish in 5 minutes")
			}
			if bw != nil {
				bw.Close()
			}
			// Before the stop and the check, which reads the whole log
			// back: neither is the engine's work per line.
			cpuUsed := processCPU() - cpu0
			peak := peakRSS()
			p.Stop(ctx)
			f.Close()
			missing, err := checkFloodFile(path, lines)
			if err != nil {
				return err
			}
			lost.add(colVmre, float64(missing))
			r := tput
			if !buffered {
				r = tputUnbuf
			}
			if el := m.elapsed(); missing == 0 && el > 0 {
				r.add(colVmre, float64(payload)/(1<<20)/el.Seconds())
				if buffered {
					rate.add(colVmre, float64(lines)/1e6/el.Seconds())
					cpu.add(colVmre, float64(cpuUsed.Nanoseconds())/float64(lines))
					if rssOK {
						rss.add(colVmre, float64(peak-rss0)/(1<<20))
					}
				}
			}
			return nil
		}
		runAva := func() error {
			path := filepath.Join(e.floodDir, "flood-ava.log")
			f, err := os.Create(path)
			if err != nil {
				return err
			}
			defer os.Remove(path)
			lf := &lateFile{f: f}
			// The plugin's output through the VM logger's Write, metered;
			// avalanchego's own records into the same file, not counted
			// as payload, so that they cannot end the count early.
			m := newMeter(lf, payload)
			out := avaLogger(m)
			av := newAvaEngine(e.ava, lf, 10*time.Second)
			rss0, rssOK := startPeakRSS()
			s, err := av.launchWith(ctx, out, out, append([]string{"flood"}, args...)...)
			if err != nil {
				f.Close()
				return fmt.Errorf("avalanchego flood launch: %w", err)
			}
			select {
			case <-m.done:
			case <-time.After(5 * time.Minute):
			}
			if rssOK {
				rss.add(colAva, float64(peakRSS()-rss0)/(1<<20))
			}
			s.Stop(ctx)
			lf.Close()
			missing, err := checkFloodFile(path, lines)
			if err != nil {
				return err
			}
			lost.add(colAva, float64(missing))
			if missing == 0 {
				tput.add(colAva, float64(payload)/(1<<20)/m.elapsed().Seconds())
			}
			return nil
		}
		// The floor is the least any engine that logs each line as a
		// JSON event can do: vmre's reads (outside the runtime's poller,
		// the pipe grown to 1 MiB, reads into 128 KiB, batched as
		// floor.Lines says), lines split with bytes.IndexByte, each written as
		// one event of constant framing around the line's bytes, one
		// Write per line into the same 256 KiB buffered file writer
		// vmre's run logs into. It parses, escapes and stamps nothing:
		// vmre's CPU per line above it is the budget of the bridge's own
		// work.
		runFloor := func() error {
			path := filepath.Join(e.floodDir, "flood-floor.log")
			f, err := os.Create(path)
			if err != nil {
				return err
			}
			defer os.Remove(path)
			bw := newFlushingWriter(f, 256<<10, 100*time.Millisecond)
			m := newLineMeter(bw, lines, bw.Flush)
			cmd := exec.Command(e.ava, append([]string{"flood-raw"}, args...)...)
			out, pw, err := floor.Pipe()
			if err != nil {
				f.Close()
				return err
			}
			defer out.Close()
			cmd.Stdout = pw
			cpu0 := processCPU()
			err = cmd.Start()
			pw.Close()
			if err != nil {
				f.Close()
				return err
			}
			floor.Lines(out, m)
			werr := cmd.Wait()
			bw.Close()
			cpuUsed := processCPU() - cpu0
			f.Close()
			if werr != nil {
				return fmt.Errorf("floor flood: %w", werr)
			}
			missing, err := checkFloodFile(path, lines)
			if err != nil {
				return err
			}
			lost.add(colFloor, float64(missing))
			if el := m.elapsed(); missing == 0 && el > 0 {
				tput.add(colFloor, float64(payload)/(1<<20)/el.Seconds())
				rate.add(colFloor, float64(lines)/1e6/el.Seconds())
				cpu.add(colFloor, float64(cpuUsed.Nanoseconds())/float64(lines))
			}
			return nil
		}
		// go-plugin's own bridge: its host reads the plugin's stderr,
		// parses each hclog JSON line and logs it through its hclog
		// logger (JSON) into the same kind of buffered file.
		runGP := func() error {
			path := filepath.Join(e.floodDir, "flood-gp.log")
			f, err := os.Create(path)
			if err != nil {
				return err
			}
			defer os.Remove(path)
			bw := newFlushingWriter(f, 256<<10, 100*time.Millisecond)
			m := newLineMeter(bw, lines, bw.Flush)
			log := hclog.New(&hclog.LoggerOptions{Output: m, Level: hclog.Trace, JSONFormat: true})
			rss0, rssOK := startPeakRSS()
			cpu0 := processCPU()
			c := plugin.NewClient(&plugin.ClientConfig{
				HandshakeConfig:  gpHandshake,
				Plugins:          plugin.PluginSet{"vm": gpVM{}},
				Cmd:              exec.Command(e.gp, append([]string{"flood"}, args[:2]...)...),
				AllowedProtocols: []plugin.Protocol{plugin.ProtocolGRPC},
				Logger:           log,
				StartTimeout:     10 * time.Second,
			})
			if _, err := c.Client(); err != nil {
				c.Kill()
				bw.Close()
				f.Close()
				return fmt.Errorf("go-plugin flood launch: %w", err)
			}
			select {
			case <-m.done:
			case <-time.After(5 * time.Minute):
			}
			cpuUsed := processCPU() - cpu0
			peak := peakRSS()
			c.Kill()
			bw.Close()
			f.Close()
			missing, err := checkFloodFile(path, lines)
			if err != nil {
				return err
			}
			lost.add(colGP, float64(missing))
			if el := m.elapsed(); missing == 0 && el > 0 {
				tput.add(colGP, float64(payload)/(1<<20)/el.Seconds())
				rate.add(colGP, float64(lines)/1e6/el.Seconds())
				cpu.add(colGP, float64(cpuUsed.Nanoseconds())/float64(lines))
				if rssOK {
					rss.add(colGP, float64(peak-rss0)/(1<<20))
				}
			}
			return nil
		}
		runCmd := func() error {
			res, err := floodVmreCommand(ctx, e, args, lines)
			if err != nil {
				return err
			}
			if res.maxRSS > 0 {
				rssCmd.add(colVmre, float64(res.maxRSS)/(1<<20))
			}
			lost.add(colVmre, float64(res.missing))
			if res.missing == 0 {
				tputCmd.add(colVmre, float64(payload)/(1<<20)/res.took.Seconds())
				if res.ownCPU > 0 {
					cpuCmd.add(colVmre, float64(res.ownCPU.Nanoseconds())/float64(lines))
				}
			}
			return nil
		}
		for i := range e.o.floodRuns {
			fs := []func() error{func() error { return runVmre(true) }, runAva, runFloor, runCmd}
			if format == "hclog-json" {
				fs = append(fs, runGP)
			}
			if !e.o.floodNoUnbuf {
				fs = append(fs, func() error { return runVmre(false) })
			}
			if err := rotate(i, fs...); err != nil {
				return err
			}
			e.progress("flood %d: run %d/%d", lineLen, i+1, e.o.floodRuns)
		}
		// The targets are issue 13's: 1 KiB avalanchego console lines
		// through the parser at least as fast as avalanchego's raw copy,
		// 1.5 M lines/s at 128 B, no line lost. The other rows have none.
		noLoss := len(lost.vals[colVmre]) > 0 && lost.vals[colVmre].pct(100) == 0
		lost.check("0 (every vmre sink)", noLoss)
		if lineLen == 1024 && format == "zap-console" {
			tput.check("vmre/ava >= 1.0", tput.ratio(colAva) >= 1)
		}
		if lineLen == 128 {
			rate.check(">= 1.5 M lines/s at 128-byte lines", rate.p50(colVmre) >= 1.5)
		}
		if d := cpu.p50(colVmre) - cpu.p50(colFloor); !math.IsNaN(d) {
			above.add(colVmre, d)
		}
		e.rows = append(e.rows, tput, tputUnbuf, tputCmd, cpuCmd, lost, rate, cpu, above, rss, rssCmd)
	}
	return nil
}

type floodCase struct {
	lineLen int
	format  string
}

// floodCases is every line length of every format.
func floodCases(o *options) []floodCase {
	var out []floodCase
	for _, f := range o.floodFormats {
		for _, n := range o.floodLines {
			out = append(out, floodCase{n, f})
		}
	}
	return out
}

// processCPU is the user and system CPU time this process has used.
func processCPU() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// cmdFlood is what floodVmreCommand measured of one `vmre run` flood.
type cmdFlood struct {
	// took is the time from starting the command until its log says the
	// plugin has exited (logged once the plugin's last line has been read).
	took time.Duration
	// missing is how many flood lines the log lacks.
	missing int64
	// maxRSS is the peak RSS in bytes reported by wait4 (0: unknown).
	maxRSS int64
	// ownCPU is the command's own user+sys CPU over its whole life, the
	// plugin's excluded (0: unknown).
	ownCPU time.Duration
}

// floodVmreCommand runs the real `vmre run` command with the flood plugin,
// its JSON log (stderr) going straight into a file as an operator's would.
//
// wait4's rusage of the command counts the children it reaped, and it
// reaps the plugin before logging its exit, so the plugin's CPU is read
// from /proc/PID/stat (cutime+cstime) at that point and subtracted.
func floodVmreCommand(ctx context.Context, e *env, pluginArgs []string, lines int64) (cmdFlood, error) {
	var res cmdFlood
	path := filepath.Join(e.floodDir, "flood-vmre-run.log")
	f, err := os.Create(path)
	if err != nil {
		return res, err
	}
	defer os.Remove(path)
	defer f.Close()
	args := append([]string{"run", "--listen", "127.0.0.1:0", "--protocol-version", strconv.Itoa(avaProtocolVersion),
		"--log-format", "json", "--", e.ava, "flood"}, pluginArgs...)
	cmd := exec.CommandContext(ctx, e.vmre, args...)
	cmd.Stderr = f // stdout (the API address and token path) is discarded
	start := time.Now()
	if err := cmd.Start(); err != nil {
		return res, err
	}
	exited := []byte(`"message":"vm process exited"`)
	tail := make([]byte, 4096)
	for deadline := start.Add(5 * time.Minute); ; time.Sleep(2 * time.Millisecond) {
		if fi, err := f.Stat(); err == nil && fi.Size() > 0 {
			n, _ := f.ReadAt(tail, max(fi.Size()-int64(len(tail)), 0))
			if bytes.Contains(tail[:n], exited) {
				res.took = time.Since(start)
				break
			}
		}
		if time.Now().After(deadline) {
			_ = cmd.Process.Kill()
			_ = cmd.Wait()
			return res, errors.New("vmre run flood: the plugin did not finish in 5 minutes")
		}
	}
	reaped, reapedOK := reapedChildrenCPU(cmd.Process.Pid)
	_ = cmd.Process.Signal(syscall.SIGTERM)
	if err := cmd.Wait(); err != nil {
		return res, fmt.Errorf("vmre run flood: %w", err)
	}
	if ru, ok := cmd.ProcessState.SysUsage().(*syscall.Rusage); ok {
		res.maxRSS = ru.Maxrss << 10 // KiB on Linux
		if total := time.Duration(ru.Utime.Nano() + ru.Stime.Nano()); reapedOK && total > reaped {
			res.ownCPU = total - reaped
		}
	}
	res.missing, err = checkFloodFile(path, lines)
	return res, err
}

// clockTicks is USER_HZ, the unit of /proc/PID/stat's times: 100 on every
// Linux architecture Go supports.
const clockTicks = 100

// reapedChildrenCPU is the user+sys CPU of the children process pid has
// waited for (cutime+cstime of /proc/PID/stat), truncated to clock ticks.
// ok is false where it cannot be read.
func reapedChildrenCPU(pid int) (time.Duration, bool) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0, false
	}
	// The command name, field 2, is in parentheses and may hold spaces:
	// fields are counted after its closing one, from field 3 (state).
	i := bytes.LastIndexByte(b, ')')
	if i < 0 {
		return 0, false
	}
	fields := strings.Fields(string(b[i+1:]))
	if len(fields) < 15 {
		return 0, false
	}
	var ticks int64
	for _, s := range fields[13:15] { // fields 16 and 17: cutime, cstime
		n, err := strconv.ParseInt(s, 10, 64)
		if err != nil {
			return 0, false
		}
		ticks += n
	}
	return time.Duration(ticks) * time.Second / clockTicks, true
}

// startPeakRSS returns this process's RSS now, in bytes, after resetting
// its high-water mark (Linux: "5" into /proc/self/clear_refs), so that
// peakRSS then reports the peak of what follows. ok is false where that
// cannot be done.
func startPeakRSS() (int64, bool) {
	runtime.GC()
	debug.FreeOSMemory()
	if err := os.WriteFile("/proc/self/clear_refs", []byte("5"), 0); err != nil {
		return 0, false
	}
	rss := procStatus("VmRSS:")
	return rss, rss > 0
}

// peakRSS is this process's RSS high-water mark (VmHWM) in bytes.
func peakRSS() int64 { return procStatus("VmHWM:") }

// procStatus returns a "kB" line of /proc/self/status in bytes, 0 if absent.
func procStatus(key string) int64 {
	b, err := os.ReadFile("/proc/self/status")
	if err != nil {
		return 0
	}
	for _, line := range bytes.Split(b, []byte("\n")) {
		if v, ok := bytes.CutPrefix(line, []byte(key)); ok {
			n, err := strconv.ParseInt(string(bytes.TrimSuffix(bytes.TrimSpace(v), []byte(" kB"))), 10, 64)
			if err != nil {
				return 0
			}
			return n << 10
		}
	}
	return 0
}

// flushingWriter is the buffered log sink an operator would put under
// zerolog for a file: writes go into a buffer under a mutex, which is
// flushed when full, every interval, and on Close.
type flushingWriter struct {
	mu   sync.Mutex
	bw   *bufio.Writer
	stop chan struct{}
	done chan struct{}
}

func newFlushingWriter(w io.Writer, size int, every time.Duration) *flushingWriter {
	f := &flushingWriter{bw: bufio.NewWriterSize(w, size), stop: make(chan struct{}), done: make(chan struct{})}
	go func() {
		defer close(f.done)
		t := time.NewTicker(every)
		defer t.Stop()
		for {
			select {
			case <-t.C:
				f.mu.Lock()
				_ = f.bw.Flush()
				f.mu.Unlock()
			case <-f.stop:
				return
			}
		}
	}()
	return f
}

func (f *flushingWriter) Write(p []byte) (int, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.bw.Write(p)
}

// Flush writes what the buffer holds into the file.
func (f *flushingWriter) Flush() error {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.bw.Flush()
}

// Close stops the flusher and flushes what is left.
func (f *flushingWriter) Close() error {
	close(f.stop)
	<-f.done
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.bw.Flush()
}
