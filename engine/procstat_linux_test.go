package engine

import (
	"bufio"
	"fmt"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"syscall"
	"testing"

	"github.com/prometheus/procfs"
)

func TestParseProcStat(t *testing.T) {
	t.Parallel()
	// Fields 3 to 24 of a real line, after "PID (NAME)".
	const tail = " S 1234 29761 11211 0 -1 4194304 97 0 0 0 13 7 -2 5 20 0 11 0 1200928 3133440 410 18446744073709551615 94685693837312\n"
	want := procStat{ppid: 1234, utime: 13, stime: 7, cutime: -2, cstime: 5, threads: 11, rssPages: 410}
	tests := []struct {
		name   string
		line   string
		want   procStat
		wantOK bool
	}{
		{name: "plain name", line: "42 (vm)" + tail, want: want, wantOK: true},
		{name: "name with spaces and parentheses", line: "42 (a) b (c) d)" + tail, want: want, wantOK: true},
		{name: "name that looks like fields", line: "42 (x) S 9 9 9)" + tail, want: want, wantOK: true},
		{name: "no newline", line: "42 (vm)" + strings.TrimSuffix(tail, "\n"), want: want, wantOK: true},
		{name: "ends at rss", line: "42 (vm) S 1234 1 1 0 -1 0 0 0 0 0 13 7 -2 5 20 0 11 0 1 1 410", want: want, wantOK: true},
		{name: "ends before rss", line: "42 (vm) S 1234 1 1 0 -1 0 0 0 0 0 13 7 -2 5 20 0 11 0 1 1"},
		{name: "no name", line: "42 vm S 1234"},
		{name: "empty", line: ""},
		{name: "ppid not a number", line: "42 (vm) S x" + tail[8:]},
		{name: "number too long", line: "42 (vm) S 1234 1 1 0 -1 0 0 0 0 0 99999999999999999999 7 -2 5 20 0 11 0 1 1 410"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			got, ok := parseProcStat([]byte(tt.line))
			if ok != tt.wantOK || got != tt.want {
				t.Errorf("parseProcStat(%q) = %+v, %v; want %+v, %v", tt.line, got, ok, tt.want, tt.wantOK)
			}
		})
	}
}

// FuzzParseProcStat: whatever the command name holds, the numbers come
// back as written; and no input makes the parser panic.
func FuzzParseProcStat(f *testing.F) {
	f.Add("vm", int64(1), int64(2), int64(3), int64(4), int64(5), int64(6), int64(7))
	f.Add("a) (b", int64(0), int64(0), int64(-1), int64(0), int64(0), int64(1), int64(0))
	f.Add(") ) 1 2 3", int64(1<<40), int64(9), int64(9), int64(9), int64(9), int64(9), int64(9))
	f.Fuzz(func(t *testing.T, name string, ppid, utime, stime, cutime, cstime, threads, rss int64) {
		_, _ = parseProcStat([]byte(name)) // any bytes at all
		if strings.ContainsAny(name, "\x00") {
			return
		}
		want := procStat{ppid: ppid, utime: utime, stime: stime, cutime: cutime, cstime: cstime, threads: threads, rssPages: rss}
		line := fmt.Sprintf("7 (%s) R %d 1 1 0 -1 0 0 0 0 0 %d %d %d %d 20 0 %d 0 1 1 %d 0 0\n",
			name, ppid, utime, stime, cutime, cstime, threads, rss)
		got, ok := parseProcStat([]byte(line))
		// Numbers beyond 18 digits are refused rather than overflowed.
		fits := true
		for _, v := range []int64{ppid, utime, stime, cutime, cstime, threads, rss} {
			if v > 999_999_999_999_999_999 || v < -999_999_999_999_999_999 {
				fits = false
			}
		}
		if ok != fits || (fits && got != want) {
			t.Fatalf("parseProcStat(%q) = %+v, %v; want %+v, %v", line, got, ok, want, fits)
		}
	})
}

// TestProcReaderAgreesWithProcfs reads every process on the machine with
// both procReader and prometheus/procfs.
func TestProcReaderAgreesWithProcfs(t *testing.T) {
	t.Parallel()
	fs, err := procfs.NewDefaultFS()
	if err != nil {
		t.Fatal(err)
	}
	self, err := fs.Proc(os.Getpid())
	if err != nil {
		t.Fatal(err)
	}
	var r procReader
	// This process: its threads and CPU move while it runs, its parent
	// and the fields that do not move must match.
	want, err := self.Stat()
	if err != nil {
		t.Fatal(err)
	}
	got, ok := r.readStat(os.Getpid())
	if !ok {
		t.Fatal("readStat of this process failed")
	}
	if int(got.ppid) != want.PPID || got.threads < 1 || got.utime+got.stime < int64(want.UTime+want.STime) || got.rssPages <= 0 {
		t.Errorf("readStat = %+v; procfs %+v", got, want)
	}
	// Processes that do not run now (this test's parent, PID 1) match field by field.
	for _, pid := range []int{1, os.Getppid()} {
		p, err := fs.Proc(pid)
		if err != nil {
			continue
		}
		want, err := p.Stat()
		if err != nil {
			continue
		}
		got, ok := r.readStat(pid)
		if !ok {
			t.Fatalf("readStat(%d) failed", pid)
		}
		if int(got.ppid) != want.PPID || int(got.threads) != want.NumThreads || got.rssPages != int64(want.RSS) ||
			got.cutime != int64(want.CUTime) || got.cstime != int64(want.CSTime) {
			t.Errorf("readStat(%d) = %+v; procfs %+v", pid, got, want)
		}
	}
}

// TestReadStatKept: a kept descriptor reads the process's current stat
// each time, is dropped once its process is gone, and is closed by the
// release after a sample that did not read it.
func TestReadStatKept(t *testing.T) {
	t.Parallel()
	var r procReader
	first, ok := r.readStatKept(os.Getpid())
	if !ok {
		t.Fatal("readStatKept of this process failed")
	}
	fd := r.kept[os.Getpid()]
	// Burn CPU until the kernel's count (in ticks) moves.
	work := 0
	for {
		st, ok := r.readStatKept(os.Getpid())
		if !ok {
			t.Fatal("second readStatKept of this process failed")
		}
		if r.kept[os.Getpid()] != fd {
			t.Fatal("the descriptor was opened again, not kept")
		}
		if st.utime+st.stime > first.utime+first.stime {
			break
		}
		for i := range 1 << 20 {
			work += i & 1
		}
	}
	t.Logf("cpu time moved after %d rounds of work", work>>19)

	cmd := exec.Command("sleep", "600")
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	// Should a check below fail first: killed by its pid and reaped.
	t.Cleanup(func() {
		if cmd.ProcessState == nil {
			_ = cmd.Process.Kill()
			_ = cmd.Wait()
		}
	})
	pid := cmd.Process.Pid
	if _, ok := r.readStatKept(pid); !ok {
		t.Fatal("readStatKept of sleep failed")
	}
	r.release()
	if len(r.kept) != 2 {
		t.Fatalf("%d descriptors kept after a release, want the 2 read since the last", len(r.kept))
	}
	_ = cmd.Process.Kill()
	_ = cmd.Wait()
	if _, ok := r.readStatKept(pid); ok {
		t.Fatal("readStatKept of a reaped process succeeded")
	}
	if _, ok := r.kept[pid]; ok {
		t.Fatal("the reaped process's descriptor is still kept")
	}
	if _, ok := r.readStatKept(os.Getpid()); !ok {
		t.Fatal("readStatKept of this process failed")
	}
	r.release()
	r.release()
	if len(r.kept) != 0 {
		t.Fatalf("%d descriptors kept after a release with none read, want 0", len(r.kept))
	}
}

// One sample of this process's tree, as the sampler takes it once it has
// seen the machine's processes, and the scan of every process that
// sampling with prometheus/procfs costs.
func BenchmarkSample(b *testing.B) {
	targets := []sampleTarget{{pid: os.Getpid()}}
	b.Run("procScanner", func(b *testing.B) {
		var s procScanner
		s.sample(targets)
		for b.Loop() {
			if u := s.sample(targets); u[0] == nil {
				b.Fatal("no sample")
			}
		}
	})
	// As the engine samples 100 idle runtimes: 100 trees of one process.
	b.Run("procScanner100", func(b *testing.B) {
		var targets []sampleTarget
		for range 100 {
			cmd := exec.Command("sleep", "600")
			if err := cmd.Start(); err != nil {
				b.Fatal(err)
			}
			b.Cleanup(func() {
				_ = cmd.Process.Kill()
				_ = cmd.Wait()
			})
			targets = append(targets, sampleTarget{pid: cmd.Process.Pid})
		}
		var s procScanner
		s.sample(targets)
		var before, after syscall.Rusage
		_ = syscall.Getrusage(syscall.RUSAGE_SELF, &before)
		for b.Loop() {
			if u := s.sample(targets); u[99] == nil {
				b.Fatal("no sample")
			}
		}
		_ = syscall.Getrusage(syscall.RUSAGE_SELF, &after)
		cpu := after.Utime.Nano() + after.Stime.Nano() - before.Utime.Nano() - before.Stime.Nano()
		b.ReportMetric(float64(cpu)/float64(b.N), "cpu-ns/op")
	})
	b.Run("procfs", func(b *testing.B) {
		for b.Loop() {
			fs, _ := procfs.NewDefaultFS()
			procs, _ := fs.AllProcs()
			for _, p := range procs {
				_, _ = p.Stat()
			}
		}
	})
}

// TestProcScannerFollowsTree: a process that appears after the scanner's
// first listing joins its parent's tree; one whose parent exits (and that
// is reparented away) leaves it, though it lives on.
func TestProcScannerFollowsTree(t *testing.T) {
	t.Parallel()
	cmd := exec.Command("sh", "-c", `read a; sh -c 'sleep 600 & echo $!; read b'; echo reaped; read c`)
	stdin, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
	})
	lines := bufio.NewScanner(stdout)
	line := func() string {
		if !lines.Scan() {
			t.Fatalf("the shell ended: %v", lines.Err())
		}
		return lines.Text()
	}
	var s procScanner
	processes := func() int {
		u := s.sample([]sampleTarget{{pid: cmd.Process.Pid}})[0]
		if u == nil {
			t.Fatal("no sample of the shell")
		}
		return u.Processes
	}
	if n := processes(); n != 1 {
		t.Fatalf("processes = %d, want the shell alone", n)
	}
	fmt.Fprintln(stdin)
	sleeper, err := strconv.Atoi(line())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = syscall.Kill(sleeper, syscall.SIGKILL) })
	if n := processes(); n != 3 {
		t.Fatalf("processes = %d, want 3: the shell, its child shell and the sleeper", n)
	}
	fmt.Fprintln(stdin)
	if got := line(); got != "reaped" {
		t.Fatalf("read %q, want reaped", got)
	}
	if n := processes(); n != 1 {
		t.Fatalf("processes = %d after the child shell exited, want the shell alone (the sleeper was reparented)", n)
	}
	if err := syscall.Kill(sleeper, 0); err != nil {
		t.Fatalf("the sleeper is gone (%v): the test proves nothing", err)
	}
}
