package engine

// Reading /proc for the resource samples. The sampler reads every
// process's stat file each interval (to find the runtimes' descendants),
// so the reading is done here with one reused buffer and a parser that
// allocates nothing: procfs's Stat (fmt.Sscan per file) was a quarter of
// an idle engine's CPU (docs/supervision.md).

import (
	"bytes"
	"os"
	"strconv"
	"syscall"
)

// procStat is what the sampler uses of /proc/PID/stat.
type procStat struct {
	ppid int64
	// CPU times in clock ticks (USER_HZ): the process's own, and those of
	// the children it reaped.
	utime, stime, cutime, cstime int64
	threads                      int64
	rssPages                     int64
}

// parseProcStat parses the content of /proc/PID/stat. The command name
// (field 2) is in parentheses and may hold spaces and parentheses itself,
// so the fields are counted from the last ')'.
func parseProcStat(b []byte) (procStat, bool) {
	end := bytes.LastIndexByte(b, ')')
	if end < 0 {
		return procStat{}, false
	}
	var st procStat
	rest := b[end+1:]
	// Field 3 (the state) is the first after the name; 24 (rss) is the
	// last the sampler needs.
	for field := 3; field <= 24; field++ {
		rest = bytes.TrimLeft(rest, " ")
		n := bytes.IndexAny(rest, " \n")
		if n < 0 {
			n = len(rest)
		}
		if n == 0 {
			return procStat{}, false
		}
		text := rest[:n]
		rest = rest[n:]
		var dst *int64
		switch field {
		case 4:
			dst = &st.ppid
		case 14:
			dst = &st.utime
		case 15:
			dst = &st.stime
		case 16:
			dst = &st.cutime
		case 17:
			dst = &st.cstime
		case 20:
			dst = &st.threads
		case 24:
			dst = &st.rssPages
		default:
			continue
		}
		// The conversion does not escape, so it does not allocate.
		v, err := strconv.ParseInt(string(text), 10, 64)
		if err != nil {
			return procStat{}, false
		}
		*dst = v
	}
	return st, true
}

// procReader reads small /proc files into one buffer it reuses. It is not
// safe for concurrent use.
type procReader struct {
	buf  []byte
	path []byte
	// kept holds /proc/PID/stat open for the processes of the sampled
	// trees, read again with one pread: by path a read is an open (whose
	// lookup in /proc costs most), a read and a close. used marks those
	// read since the last release.
	kept map[int]int // pid -> descriptor
	used map[int]bool
}

// readStat reads and parses /proc/PID/stat.
func (p *procReader) readStat(pid int) (procStat, bool) {
	b, ok := p.read(pid, "/stat")
	if !ok {
		return procStat{}, false
	}
	return parseProcStat(b)
}

// readStatKept is readStat through a descriptor kept open until a
// release finds pid unread since the one before. A kept descriptor stays
// with the process it was opened for: once that process is gone, pid is
// opened again, in case another process has it now.
func (p *procReader) readStatKept(pid int) (procStat, bool) {
	if p.kept == nil {
		p.kept, p.used = make(map[int]int), make(map[int]bool)
	}
	if fd, ok := p.kept[pid]; ok {
		if b, ok := p.pread(fd); ok {
			p.used[pid] = true
			return parseProcStat(b)
		}
		_ = syscall.Close(fd)
		delete(p.kept, pid)
	}
	fd, err := syscall.Open(p.pidPath(pid, "/stat"), syscall.O_RDONLY|syscall.O_CLOEXEC, 0)
	if err != nil {
		return procStat{}, false
	}
	b, ok := p.pread(fd)
	if !ok {
		_ = syscall.Close(fd)
		return procStat{}, false
	}
	p.kept[pid], p.used[pid] = fd, true
	return parseProcStat(b)
}

// pread reads the whole of a small /proc file from its start: a read at
// offset 0 makes the kernel generate the content afresh (seq_file), and
// one read returns all of it when the buffer has room, so no second read
// is needed to see its end.
func (p *procReader) pread(fd int) ([]byte, bool) {
	if p.buf == nil {
		p.buf = make([]byte, 4096)
	}
	for {
		n, err := syscall.Pread(fd, p.buf, 0)
		if err == syscall.EINTR {
			continue
		}
		// The files read here are a few hundred bytes: one that fills the
		// buffer is not one of them.
		if err != nil || n == 0 || n == len(p.buf) {
			return nil, false
		}
		return p.buf[:n], true
	}
}

// release closes the kept descriptors not read since the last release.
func (p *procReader) release() {
	for pid, fd := range p.kept {
		if !p.used[pid] {
			_ = syscall.Close(fd)
			delete(p.kept, pid)
		}
	}
	clear(p.used)
}

// close closes every kept descriptor. The reader stays usable.
func (p *procReader) close() {
	clear(p.used)
	p.release()
}

// read returns the content of /proc/PID/name, valid until the next read:
// an open, one read (see pread) and a close. Raw system calls: os.Open's
// extra fstat and *os.File cost more than the read itself for a file of a
// few hundred bytes.
func (p *procReader) read(pid int, name string) ([]byte, bool) {
	fd, err := syscall.Open(p.pidPath(pid, name), syscall.O_RDONLY|syscall.O_CLOEXEC, 0)
	if err != nil {
		return nil, false
	}
	defer syscall.Close(fd)
	return p.pread(fd)
}

// pidPath returns "/proc/PID" + name.
func (p *procReader) pidPath(pid int, name string) string {
	p.path = append(p.path[:0], "/proc/"...)
	p.path = strconv.AppendInt(p.path, int64(pid), 10)
	p.path = append(p.path, name...)
	return string(p.path)
}

// pids lists the processes in /proc.
func pids() ([]int, bool) {
	f, err := os.Open("/proc")
	if err != nil {
		return nil, false
	}
	defer f.Close()
	names, err := f.Readdirnames(-1)
	if err != nil {
		return nil, false
	}
	out := make([]int, 0, len(names))
	for _, name := range names {
		if pid, err := strconv.Atoi(name); err == nil {
			out = append(out, pid)
		}
	}
	return out, true
}
