package api

import (
	"bytes"
	"os"
	"strconv"

	dto "github.com/prometheus/client_model/go"
	"github.com/vmre/vmre/internal/procfd"
)

// The engine process's families: the names, help texts, types and values
// of client_golang's process collector
// (collectors.NewProcessCollector(collectors.ProcessCollectorOpts{})),
// read from /proc/self. A file that cannot be read or parsed leaves its
// families out of the scrape, as that collector does.

// userHZ is the unit of the CPU times in /proc/PID/stat, which Linux
// fixes at 100 for user space whatever the kernel's own tick rate.
const userHZ = 100

// processFamilies reads the engine process's families. It is safe for
// concurrent use.
type processFamilies struct {
	start    float64 // process_start_time_seconds; 0 if unknown
	pageSize int
}

// newProcessFamilies reads the process's start time, which does not
// change.
func newProcessFamilies() *processFamilies {
	p := &processFamilies{pageSize: os.Getpagesize()}
	if st, ok := readSelfStat(); ok {
		if boot, ok := bootTime(); ok {
			p.start = boot + float64(st.starttime)/userHZ
		}
	}
	return p
}

// families appends the process's families to out.
func (p *processFamilies) families(out []*dto.MetricFamily) []*dto.MetricFamily {
	if st, ok := readSelfStat(); ok {
		out = append(out,
			valueFamily("process_cpu_seconds_total", "Total user and system CPU time spent in seconds.", dto.MetricType_COUNTER,
				float64(st.utime+st.stime)/userHZ),
			valueFamily("process_virtual_memory_bytes", "Virtual memory size in bytes.", dto.MetricType_GAUGE, float64(st.vsize)),
			valueFamily("process_resident_memory_bytes", "Resident memory size in bytes.", dto.MetricType_GAUGE, float64(st.rss*int64(p.pageSize))),
		)
		if p.start != 0 {
			out = append(out, valueFamily("process_start_time_seconds", "Start time of the process since unix epoch in seconds.", dto.MetricType_GAUGE, p.start))
		}
	}
	if n, ok := procfd.Count(0); ok {
		out = append(out, valueFamily("process_open_fds", "Number of open file descriptors.", dto.MetricType_GAUGE, float64(n)))
	}
	if files, space, ok := readLimits(); ok {
		out = append(out,
			valueFamily("process_max_fds", "Maximum number of open file descriptors.", dto.MetricType_GAUGE, float64(files)),
			valueFamily("process_virtual_memory_max_bytes", "Maximum amount of virtual memory available in bytes.", dto.MetricType_GAUGE, float64(space)),
		)
	}
	if in, out2, ok := readNetOctets(); ok {
		out = append(out,
			valueFamily("process_network_receive_bytes_total", "Number of bytes received by the process over the network.", dto.MetricType_COUNTER, in),
			valueFamily("process_network_transmit_bytes_total", "Number of bytes sent by the process over the network.", dto.MetricType_COUNTER, out2),
		)
	}
	return out
}

// selfStat is what the process families use of /proc/self/stat.
type selfStat struct {
	utime, stime int64 // clock ticks
	starttime    int64 // clock ticks after boot
	vsize        int64 // bytes
	rss          int64 // pages
}

// readSelfStat reads /proc/self/stat. The command name (field 2) is in
// parentheses and may hold spaces and parentheses itself, so the fields
// are counted from the last ')'.
func readSelfStat() (selfStat, bool) {
	b, err := os.ReadFile("/proc/self/stat")
	if err != nil {
		return selfStat{}, false
	}
	end := bytes.LastIndexByte(b, ')')
	if end < 0 {
		return selfStat{}, false
	}
	// fields[0] is field 3, the state.
	fields := bytes.Fields(b[end+1:])
	if len(fields) < 22 {
		return selfStat{}, false
	}
	var st selfStat
	for _, f := range []struct {
		field int
		dst   *int64
	}{{14, &st.utime}, {15, &st.stime}, {22, &st.starttime}, {23, &st.vsize}, {24, &st.rss}} {
		v, err := strconv.ParseInt(string(fields[f.field-3]), 10, 64)
		if err != nil {
			return selfStat{}, false
		}
		*f.dst = v
	}
	return st, true
}

// bootTime returns the boot time from /proc/stat, in seconds since the
// epoch.
func bootTime() (float64, bool) {
	b, err := os.ReadFile("/proc/stat")
	if err != nil {
		return 0, false
	}
	for line := range bytes.Lines(b) {
		if v, ok := bytes.CutPrefix(line, []byte("btime ")); ok {
			t, err := strconv.ParseInt(string(bytes.TrimSpace(v)), 10, 64)
			return float64(t), err == nil
		}
	}
	return 0, false
}

// readLimits returns the soft limits on open files and on the address
// space from /proc/self/limits; "unlimited" is the largest uint64.
func readLimits() (files, space uint64, ok bool) {
	b, err := os.ReadFile("/proc/self/limits")
	if err != nil {
		return 0, 0, false
	}
	var haveFiles, haveSpace bool
	for line := range bytes.Lines(b) {
		if v, found := bytes.CutPrefix(line, []byte("Max open files ")); found {
			files, haveFiles = softLimit(v)
		} else if v, found := bytes.CutPrefix(line, []byte("Max address space ")); found {
			space, haveSpace = softLimit(v)
		}
	}
	return files, space, haveFiles && haveSpace
}

// softLimit parses the first column after a limit's name.
func softLimit(cols []byte) (uint64, bool) {
	f := bytes.Fields(cols)
	if len(f) == 0 {
		return 0, false
	}
	if string(f[0]) == "unlimited" {
		return ^uint64(0), true
	}
	v, err := strconv.ParseUint(string(f[0]), 10, 64)
	return v, err == nil
}

// readNetOctets returns the IpExt InOctets and OutOctets of the process's
// network namespace from /proc/self/net/netstat; 0 where absent.
func readNetOctets() (in, out float64, ok bool) {
	b, err := os.ReadFile("/proc/self/net/netstat")
	if err != nil {
		return 0, 0, false
	}
	// The file holds pairs of lines: "IpExt: Name ..." then "IpExt: value ...".
	var names [][]byte
	for line := range bytes.Lines(b) {
		rest, found := bytes.CutPrefix(line, []byte("IpExt:"))
		if !found {
			continue
		}
		if names == nil {
			names = bytes.Fields(rest)
			continue
		}
		for i, v := range bytes.Fields(rest) {
			if i >= len(names) {
				break
			}
			var dst *float64
			switch string(names[i]) {
			case "InOctets":
				dst = &in
			case "OutOctets":
				dst = &out
			default:
				continue
			}
			x, err := strconv.ParseFloat(string(v), 64)
			if err != nil {
				return 0, 0, false
			}
			*dst = x
		}
		break
	}
	return in, out, true
}
