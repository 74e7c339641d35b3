package engine

import (
	"bufio"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"github.com/prometheus/procfs"
)

// userHZ is the unit of the CPU times in /proc/PID/stat, as procfs
// assumes too: USER_HZ is 100 on every Linux architecture vmre builds for.
const userHZ = 100

// sampleUsage reads the usage of each target's process tree from one scan
// of /proc (or from its cgroup), in targets' order; nil where the process
// is gone.
func sampleUsage(targets []sampleTarget) []*Usage {
	out := make([]*Usage, len(targets))
	fs, err := procfs.NewDefaultFS()
	if err != nil {
		return out
	}
	procs, err := fs.AllProcs()
	if err != nil {
		return out
	}
	stats := make(map[int]procfs.ProcStat, len(procs))
	byPid := make(map[int]procfs.Proc, len(procs))
	children := make(map[int][]int)
	for _, p := range procs {
		st, err := p.Stat()
		if err != nil {
			continue // exited since the directory was read
		}
		stats[st.PID] = st
		byPid[st.PID] = p
		children[st.PPID] = append(children[st.PPID], st.PID)
	}
	for i, t := range targets {
		if _, ok := stats[t.pid]; !ok {
			continue
		}
		var members []int
		if t.cgroup != "" {
			members = cgroupProcs(t.cgroup)
		}
		if members == nil {
			members = tree(t.pid, children)
		}
		u := &Usage{}
		for _, pid := range members {
			st, ok := stats[pid]
			if !ok {
				continue
			}
			u.Processes++
			u.Threads += st.NumThreads
			u.RSSBytes += int64(st.ResidentMemory())
			// Reaped children's time is in their parent's cutime and
			// cstime, so the tree's total only grows as children come
			// and go.
			u.CPUSeconds += float64(st.UTime+st.STime) / userHZ
			u.CPUSeconds += float64(st.CUTime+st.CSTime) / userHZ
			if fds, err := byPid[pid].FileDescriptorsLen(); err == nil {
				u.OpenFDs += fds
			}
		}
		if t.cgroup != "" {
			if cpu, ok := cgroupCPU(t.cgroup); ok {
				u.CPUSeconds = cpu
			}
			if mem, ok := readInt(filepath.Join(t.cgroup, "memory.current")); ok {
				u.RSSBytes = mem
			}
		}
		out[i] = u
	}
	return out
}

// tree returns root and its descendants.
func tree(root int, children map[int][]int) []int {
	out := []int{root}
	for i := 0; i < len(out); i++ {
		out = append(out, children[out[i]]...)
	}
	return out
}

// cgroupProcs lists the processes in the cgroup dir, or nil.
func cgroupProcs(dir string) []int {
	b, err := os.ReadFile(filepath.Join(dir, "cgroup.procs"))
	if err != nil {
		return nil
	}
	out := []int{}
	for _, f := range strings.Fields(string(b)) {
		if pid, err := strconv.Atoi(f); err == nil {
			out = append(out, pid)
		}
	}
	return out
}

// cgroupCPU reads the cgroup's usage_usec from cpu.stat, in seconds: it
// counts every process that ever ran in the cgroup.
func cgroupCPU(dir string) (float64, bool) {
	f, err := os.Open(filepath.Join(dir, "cpu.stat"))
	if err != nil {
		return 0, false
	}
	defer f.Close()
	s := bufio.NewScanner(f)
	for s.Scan() {
		if v, ok := strings.CutPrefix(s.Text(), "usage_usec "); ok {
			usec, err := strconv.ParseInt(v, 10, 64)
			return float64(usec) / 1e6, err == nil
		}
	}
	return 0, false
}

// readInt reads a file holding one integer.
func readInt(path string) (int64, bool) {
	b, err := os.ReadFile(path)
	if err != nil {
		return 0, false
	}
	v, err := strconv.ParseInt(strings.TrimSpace(string(b)), 10, 64)
	return v, err == nil
}
