package engine

import (
	"bufio"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"

	"github.com/vmre/vmre/internal/procfd"
)

// userHZ is the unit of the CPU times in /proc/PID/stat, as procfs
// assumes too: USER_HZ is 100 on every Linux architecture vmre builds for.
const userHZ = 100

// pageSize is the unit of the resident set size in /proc/PID/stat.
var pageSize = int64(os.Getpagesize())

// procScanner samples the process trees of runtimes from /proc. It
// remembers the parent of every process it has seen, so that a sample
// reads the stat files of the processes that appeared since the last one
// and of the runtimes' trees, not of every process on the machine. It is
// not safe for concurrent use: the engine samples one tick at a time.
type procScanner struct {
	r      procReader
	parent map[int]int // pid -> ppid, of every process seen in the last listing
	listed map[int]bool
}

// sample reads the usage of each target's process tree, in targets'
// order; nil where the process is gone. A target in a cgroup takes its
// members from the cgroup; the others take the plugin and its
// descendants.
func (s *procScanner) sample(targets []sampleTarget) []*Usage {
	out := make([]*Usage, len(targets))
	// This sample's stat reads: each process is read at most once. Those
	// of the trees' members keep their file open for the next sample.
	stats := make(map[int]procStat)
	defer s.r.release()
	read := func(pid int, keep bool) (procStat, bool) {
		if st, ok := stats[pid]; ok {
			return st, true
		}
		var st procStat
		var ok bool
		if keep {
			st, ok = s.r.readStatKept(pid)
		} else {
			st, ok = s.r.readStat(pid)
		}
		if ok {
			stats[pid] = st
		}
		return st, ok
	}
	stat := func(pid int) (procStat, bool) { return read(pid, true) }
	var children map[int][]int
	if slices.ContainsFunc(targets, func(t sampleTarget) bool { return t.cgroup == "" }) {
		if !s.list(func(pid int) (procStat, bool) { return read(pid, false) }) {
			return out
		}
		children = make(map[int][]int)
		for pid, ppid := range s.parent {
			children[ppid] = append(children[ppid], pid)
		}
	}
	for i, t := range targets {
		if _, ok := stat(t.pid); !ok {
			continue
		}
		var members []int
		if t.cgroup != "" {
			members = cgroupProcs(t.cgroup)
		}
		if members == nil {
			if children == nil {
				continue // the cgroup is gone, and the plugin with it
			}
			members = tree(t.pid, children)
		}
		u := &Usage{}
		for _, pid := range members {
			st, ok := stat(pid)
			if !ok {
				continue
			}
			// A member whose parent died was reparented out of the tree:
			// the next sample no longer counts it.
			if _, seen := s.parent[pid]; seen {
				s.parent[pid] = int(st.ppid)
			}
			u.Processes++
			u.Threads += int(st.threads)
			u.RSSBytes += st.rssPages * pageSize
			// Reaped children's time is in their parent's cutime and
			// cstime, so the tree's total only grows as children come
			// and go.
			u.CPUSeconds += float64(st.utime+st.stime+st.cutime+st.cstime) / userHZ
			if fds, ok := procfd.Count(pid); ok {
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

// list brings s.parent up to date with the processes in /proc: processes
// gone are forgotten, new ones are read (with stat) for their parent. A
// process's parent changes only when its parent dies and it is reparented
// to init or a subreaper above it, which never moves it into a tree it
// was not in; the members of the sampled trees are read anyway and have
// their parent refreshed then.
func (s *procScanner) list(stat func(int) (procStat, bool)) bool {
	all, ok := pids()
	if !ok {
		return false
	}
	if s.parent == nil {
		s.parent, s.listed = make(map[int]int), make(map[int]bool)
	}
	clear(s.listed)
	for _, pid := range all {
		s.listed[pid] = true
		if _, seen := s.parent[pid]; seen {
			continue
		}
		if st, ok := stat(pid); ok {
			s.parent[pid] = int(st.ppid)
		} else {
			delete(s.listed, pid) // exited since the directory was read
		}
	}
	for pid := range s.parent {
		if !s.listed[pid] {
			delete(s.parent, pid)
		}
	}
	return true
}

// close releases what the scanner keeps open between samples. The
// scanner stays usable.
func (s *procScanner) close() { s.r.close() }

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
