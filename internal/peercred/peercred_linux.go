package peercred

import (
	"bufio"
	"bytes"
	"cmp"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net/netip"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync/atomic"
	"syscall"

	"golang.org/x/sys/unix"
)

// maxTreeDepth bounds parent walks and descendant searches; real process
// trees are far shallower, and a bound keeps a pathological /proc from
// looping.
const maxTreeDepth = 1 << 12

// maxTreeSize bounds how many descendants one lookup collects.
const maxTreeSize = 1 << 14

func lookup(local, peer netip.AddrPort, root int) (Owner, error) {
	inode, err := socketInode(local, peer)
	if err != nil {
		return Owner{}, err
	}
	seen := make(map[int]bool)
	if root > 0 {
		// Fast path: the launched process itself, then its descendants. A
		// failed descendant walk only costs speed: the full scan below still
		// finds every holder.
		seen[root] = true
		if holds(root, inode) {
			return Owner{Pid: root, InTree: true}, nil
		}
		kids, _ := descendants(root)
		for _, pid := range kids {
			seen[pid] = true
			if holds(pid, inode) {
				return Owner{Pid: pid, InTree: true}, nil
			}
		}
	}
	// Slow path: every process. A holder found here may still be in the
	// tree (forked after the walk above), so ask.
	pids, err := allPids()
	if err != nil {
		return Owner{}, err
	}
	foreign := 0
	for _, pid := range pids {
		if seen[pid] || !holds(pid, inode) {
			continue
		}
		if ok, _ := inTree(pid, root); ok {
			return Owner{Pid: pid, InTree: true}, nil
		}
		if foreign == 0 {
			foreign = pid
		}
	}
	if foreign != 0 {
		return Owner{Pid: foreign}, nil
	}
	return Owner{}, fmt.Errorf("%w: no visible process holds socket inode %d (%s -> %s)", ErrNotFound, inode, peer, local)
}

func socketInode(local, peer netip.AddrPort) (uint64, error) {
	la, pa := local.Addr().Unmap().WithZone(""), peer.Addr().Unmap().WithZone("")
	if !la.IsValid() || !pa.IsValid() || local.Port() == 0 || peer.Port() == 0 {
		return 0, fmt.Errorf("%w: invalid addresses %s -> %s", ErrNotFound, peer, local)
	}
	if la.Is4() != pa.Is4() {
		return 0, fmt.Errorf("%w: mixed address families %s -> %s", ErrNotFound, peer, local)
	}
	want := conn{
		own:    netip.AddrPortFrom(pa, peer.Port()),
		remote: netip.AddrPortFrom(la, local.Port()),
	}
	switch inode, err := diagInode(want); {
	case err == nil:
		return inode, nil
	case errors.Is(err, ErrNotFound):
		return 0, fmt.Errorf("%w: no tcp socket %s -> %s", ErrNotFound, peer, local)
	}
	// An IPv4 client socket sits in the tcp table; one opened as IPv6 and
	// connected to an IPv4-mapped address sits in tcp6 with mapped
	// addresses. Pure IPv6 is only in tcp6.
	tables := []string{"/proc/net/tcp6"}
	if la.Is4() && pa.Is4() {
		tables = []string{"/proc/net/tcp", "/proc/net/tcp6"}
	}
	for _, table := range tables {
		inode, err := findInTable(table, want)
		if err == nil {
			return inode, nil
		}
		if !errors.Is(err, ErrNotFound) && !errors.Is(err, fs.ErrNotExist) {
			return 0, err
		}
	}
	return 0, fmt.Errorf("%w: no tcp socket %s -> %s", ErrNotFound, peer, local)
}

func holder(inode uint64) (int, error) {
	pids, err := allPids()
	if err != nil {
		return 0, err
	}
	for _, pid := range pids {
		if holds(pid, inode) {
			return pid, nil
		}
	}
	return 0, fmt.Errorf("%w: no visible process holds socket inode %d", ErrNotFound, inode)
}

func listenerInodes(addr netip.AddrPort) ([]uint64, error) {
	a := addr.Addr().Unmap().WithZone("")
	if !a.IsValid() || addr.Port() == 0 {
		return nil, fmt.Errorf("%w: invalid address %s", ErrNotFound, addr)
	}
	out, err := diagListeners(a, addr.Port())
	if errors.Is(err, errDiagUnavailable) {
		out, err = listenersInTables(a, addr.Port())
	}
	if err != nil {
		return nil, err
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("%w: nothing listens on %s", ErrNotFound, addr)
	}
	return out, nil
}

// listenersInTables is [diagListeners] by a scan of /proc/net/tcp and
// /proc/net/tcp6.
func listenersInTables(a netip.Addr, p uint16) ([]uint64, error) {
	var out []uint64
	port := fmt.Sprintf(":%04X", p)
	tables := []string{"/proc/net/tcp6"}
	if a.Is4() {
		tables = []string{"/proc/net/tcp", "/proc/net/tcp6"}
	}
	for _, table := range tables {
		f, err := os.Open(table)
		if errors.Is(err, fs.ErrNotExist) {
			continue
		}
		if err != nil {
			return nil, fmt.Errorf("read socket table: %w", err)
		}
		sc := bufio.NewScanner(f)
		for sc.Scan() {
			// "sl local_address rem_address st ... inode": st 0A is LISTEN.
			fields := strings.Fields(sc.Text())
			if len(fields) < 10 || fields[3] != "0A" || !strings.HasSuffix(fields[1], port) {
				continue
			}
			own, ok := decodeAddr(fields[1][:len(fields[1])-len(port)])
			if !ok {
				continue
			}
			// A wildcard listener (0.0.0.0, or :: which also takes IPv4
			// unless it is IPv6-only) accepts a connection to addr too.
			if own = own.Unmap(); own != a && !own.IsUnspecified() {
				continue
			}
			if inode, err := strconv.ParseUint(fields[9], 10, 64); err == nil && inode != 0 {
				out = append(out, inode)
			}
		}
		err = sc.Err()
		f.Close()
		if err != nil {
			return nil, fmt.Errorf("read socket table: %w", err)
		}
	}
	return out, nil
}

type conn struct {
	own, remote netip.AddrPort
}

// findInTable scans one /proc/net/tcp{,6} table for the socket whose local
// address is want.own and remote address want.remote. Sockets in TIME_WAIT
// and orphans have inode 0 and are skipped: nobody holds them.
func findInTable(path string, want conn) (uint64, error) {
	f, err := os.Open(path)
	if err != nil {
		return 0, fmt.Errorf("read socket table: %w", err)
	}
	defer f.Close()
	// The ports are printed as ":%04X"; checking them first skips nearly
	// every line without decoding it.
	ownPort := fmt.Sprintf(":%04X", want.own.Port())
	remotePort := fmt.Sprintf(":%04X", want.remote.Port())
	r := bufio.NewReaderSize(f, 32<<10)
	first := true
	for {
		line, err := r.ReadString('\n')
		if first {
			first = false // the header
		} else if strings.Contains(line, ownPort) {
			if inode, ok := matchLine(line, want, ownPort, remotePort); ok {
				return inode, nil
			}
		}
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return 0, fmt.Errorf("read socket table: %w", err)
		}
	}
	return 0, ErrNotFound
}

func matchLine(line string, want conn, ownPort, remotePort string) (uint64, bool) {
	// "sl local_address rem_address st tx:rx tr:when retrnsmt uid timeout inode ..."
	fields := strings.Fields(line)
	if len(fields) < 10 || !strings.HasSuffix(fields[1], ownPort) || !strings.HasSuffix(fields[2], remotePort) {
		return 0, false
	}
	own, ok1 := decodeAddr(fields[1][:len(fields[1])-len(ownPort)])
	remote, ok2 := decodeAddr(fields[2][:len(fields[2])-len(remotePort)])
	if !ok1 || !ok2 || own.Unmap() != want.own.Addr() || remote.Unmap() != want.remote.Addr() {
		return 0, false
	}
	inode, err := strconv.ParseUint(fields[9], 10, 64)
	if err != nil || inode == 0 {
		return 0, false
	}
	return inode, true
}

// decodeAddr decodes the kernel's rendering of an address: each 32-bit word
// of the network-order address printed as a native-endian number in hex.
func decodeAddr(s string) (netip.Addr, bool) {
	if len(s) != 8 && len(s) != 32 {
		return netip.Addr{}, false
	}
	raw, err := hex.DecodeString(s)
	if err != nil {
		return netip.Addr{}, false
	}
	b := make([]byte, len(raw))
	for i := 0; i < len(raw); i += 4 {
		binary.NativeEndian.PutUint32(b[i:], binary.BigEndian.Uint32(raw[i:]))
	}
	addr, ok := netip.AddrFromSlice(b)
	return addr, ok
}

// holdsHinted is Holds: it first reads the one descriptor where the last
// socket it found was (holdsHint), then falls back to holdsAt.
func holdsHinted(pid int, inode uint64) bool {
	if pid <= 0 {
		return false
	}
	if fd := int(holdsHint.Load()) - 1; fd >= 0 && fdLinkIs(pid, fd, socketLink(inode)) {
		return true
	}
	fd := holdsAt(pid, inode)
	if fd >= 0 {
		holdsHint.Store(int32(fd) + 1)
	}
	return fd >= 0
}

// holds reports whether pid holds the socket; see holdsAt.
func holds(pid int, inode uint64) bool { return holdsAt(pid, inode) >= 0 }

// holdsAt returns the number of pid's descriptor that is the socket, or
// -1. It tries pid's descriptors from the highest number down and stops
// at the first that is the socket. The kernel gives a new descriptor the
// lowest free number, so the connection a plugin has just opened for its
// handshake is nearly always its highest: one readlink instead of one per
// descriptor in /proc's ascending order. Every descriptor is still tried,
// so a socket with a low number is found too, only later.
func holdsAt(pid int, inode uint64) int {
	if pid <= 0 {
		return -1
	}
	target := socketLink(inode)
	found := -1
	eachFDLink(pid, func(fd int, link []byte) bool {
		if bytes.Equal(link, target) {
			found = fd
		}
		return found < 0
	})
	return found
}

func holdsAny(pid int, inodes []uint64) bool {
	if pid <= 0 || len(inodes) == 0 {
		return false
	}
	targets := make([][]byte, len(inodes))
	for i, inode := range inodes {
		targets[i] = socketLink(inode)
	}
	found := false
	eachFDLink(pid, func(_ int, link []byte) bool {
		found = slices.ContainsFunc(targets, func(t []byte) bool { return bytes.Equal(link, t) })
		return !found
	})
	return found
}

// socketLink is the link target /proc shows for a descriptor of the
// socket with this inode.
func socketLink(inode uint64) []byte {
	return append(strconv.AppendUint([]byte("socket:["), inode, 10), ']')
}

// holdsHint is one more than the descriptor number at which holds last
// found a socket (0: none yet). An engine's plugins are mostly one
// program, which opens its handshake connection at the same descriptor number at every start, so
// the next check reads that one link (/proc/PID/fd/N: one readlink) before
// it lists the directory: a listing makes the kernel build a /proc entry
// for every descriptor of the plugin, most of the cost of a check. It is
// only a guess: a miss costs that one readlink, and only a link naming the
// socket admits anyone, as in the full walk.
var holdsHint atomic.Int32

// fdLinkIs reports whether pid's descriptor fd is the file target names.
func fdLinkIs(pid, fd int, target []byte) bool {
	var pathBuf [48]byte
	path := strconv.AppendInt(append(pathBuf[:0], "/proc/"...), int64(pid), 10)
	path = strconv.AppendInt(append(path, "/fd/"...), int64(fd), 10)
	var link [64]byte
	n, err := unix.Readlink(string(path), link[:])
	return err == nil && n < len(link) && bytes.Equal(link[:n], target)
}

func treeSockets(root int) (map[uint64]int, error) {
	if root <= 0 {
		return nil, fmt.Errorf("%w: no process tree (root pid %d)", ErrNotFound, root)
	}
	out := make(map[uint64]int)
	if !addSockets(out, root) {
		if _, err := os.Stat("/proc/" + strconv.Itoa(root)); err != nil {
			return out, fmt.Errorf("%w: process %d is gone", ErrNotFound, root)
		}
		return out, fmt.Errorf("%w: the descriptors of process %d", ErrIncomplete, root)
	}
	kids, err := descendants(root)
	if err != nil {
		return out, fmt.Errorf("%w: list descendants of %d: %w", ErrIncomplete, root, err)
	}
	var unreadable []int
	for _, pid := range kids {
		if !addSockets(out, pid) {
			unreadable = append(unreadable, pid)
		}
	}
	for _, pid := range unreadable {
		// Exited since the walk: it holds nothing now. Still there: its
		// descriptors may not be read.
		if _, err := os.Stat("/proc/" + strconv.Itoa(pid)); err == nil {
			return out, fmt.Errorf("%w: the descriptors of process %d", ErrIncomplete, pid)
		}
	}
	return out, nil
}

// addSockets adds the inode of every socket pid holds to m (inode -> pid;
// the first holder found stays). It reports false if pid's descriptors
// could not be listed (gone, or not ours to inspect).
func addSockets(m map[uint64]int, pid int) bool {
	return eachFDLink(pid, func(_ int, link []byte) bool {
		rest, ok := bytes.CutPrefix(link, []byte("socket:["))
		if !ok || len(rest) < 2 || rest[len(rest)-1] != ']' {
			return true
		}
		if inode, err := strconv.ParseUint(string(rest[:len(rest)-1]), 10, 64); err == nil {
			if _, seen := m[inode]; !seen {
				m[inode] = pid
			}
		}
		return true
	})
}

// eachFDLink calls fn with the number and link target of each of pid's descriptors,
// highest number first (see holds), until fn returns false; link is only
// valid during the call. It reports false if pid's descriptors could not
// be listed (gone, or not ours to inspect); a descriptor closed meanwhile,
// or whose target does not fit 64 bytes (no socket's does), is skipped.
//
// It runs once per tokenless handshake, so it talks to /proc directly: one
// open of /proc/PID/fd, getdents into a stack buffer, and readlinkat
// relative to that directory (no path walk through /proc per descriptor).
func eachFDLink(pid int, fn func(fd int, link []byte) bool) bool {
	var pathBuf [32]byte
	dir := strconv.AppendInt(append(pathBuf[:0], "/proc/"...), int64(pid), 10)
	dfd, err := unix.Open(string(append(dir, "/fd"...)), unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return false
	}
	defer unix.Close(dfd)

	var fdBuf [64]int
	fds := fdBuf[:0]
	var dents [4096]byte
	for {
		n, err := unix.Getdents(dfd, dents[:])
		if err != nil || n <= 0 {
			break // on an error the descriptors read so far are still worth trying
		}
		fds = appendDirentNumbers(fds, dents[:n])
	}
	slices.SortFunc(fds, func(a, b int) int { return cmp.Compare(b, a) })

	var link [64]byte // longer than any "socket:[N]"
	var name [24]byte
	for _, fd := range fds {
		n, err := unix.Readlinkat(dfd, string(strconv.AppendInt(name[:0], int64(fd), 10)), link[:])
		if err != nil || n >= len(link) {
			continue
		}
		if !fn(fd, link[:n]) {
			break
		}
	}
	return true
}

// appendDirentNumbers appends the numeric names among the linux_dirent64
// records in buf (ino u64, off i64, reclen u16, type u8, NUL-terminated
// name) to out; "." and ".." are skipped.
func appendDirentNumbers(out []int, buf []byte) []int {
	for len(buf) >= 19 {
		reclen := int(binary.NativeEndian.Uint16(buf[16:18]))
		if reclen < 19 || reclen > len(buf) {
			return out // malformed: stop rather than misread
		}
		rec := buf[19:reclen]
		if i := bytes.IndexByte(rec, 0); i >= 0 {
			rec = rec[:i]
		}
		if n, ok := parseDecimal(rec); ok {
			out = append(out, n)
		}
		buf = buf[reclen:]
	}
	return out
}

// parseDecimal parses a non-empty run of ASCII digits that fits an int32.
func parseDecimal(b []byte) (int, bool) {
	if len(b) == 0 || len(b) > 9 {
		return 0, false
	}
	n := 0
	for _, c := range b {
		if c < '0' || c > '9' {
			return 0, false
		}
		n = n*10 + int(c-'0')
	}
	return n, true
}

func descendants(root int) ([]int, error) {
	if root <= 0 {
		return nil, nil
	}
	var out []int
	seen := map[int]bool{root: true}
	queue := []int{root}
	for depth := 0; len(queue) > 0 && depth < maxTreeDepth && len(out) < maxTreeSize; depth++ {
		var next []int
		for _, pid := range queue {
			kids, err := children(pid)
			if errors.Is(err, errNoChildrenFile) {
				return descendantsByScan(root)
			}
			for _, k := range kids {
				if !seen[k] {
					seen[k] = true
					out = append(out, k)
					next = append(next, k)
				}
			}
		}
		queue = next
	}
	return out, nil
}

var errNoChildrenFile = errors.New("/proc/PID/task/TID/children not available")

// children lists pid's children through /proc/PID/task/TID/children
// (CONFIG_PROC_CHILDREN), one file per thread since a child's parent is the
// thread that forked it. Like eachFDLink it talks to /proc directly: the
// task directory is opened once and each thread's file relative to it.
func children(pid int) ([]int, error) {
	var pathBuf [32]byte
	taskDir := strconv.AppendInt(append(pathBuf[:0], "/proc/"...), int64(pid), 10)
	dfd, err := unix.Open(string(append(taskDir, "/task"...)), unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, nil // gone
	}
	defer unix.Close(dfd)
	var tidBuf [64]int
	tids := tidBuf[:0]
	var dents [4096]byte
	for {
		n, err := unix.Getdents(dfd, dents[:])
		if err != nil || n <= 0 {
			break
		}
		tids = appendDirentNumbers(tids, dents[:n])
	}
	var out []int
	var name [32]byte
	var data [512]byte
	for _, tid := range tids {
		tidName := strconv.AppendInt(name[:0], int64(tid), 10)
		fd, err := unix.Openat(dfd, string(append(tidName, "/children"...)), unix.O_RDONLY|unix.O_CLOEXEC, 0)
		if err != nil {
			if errors.Is(err, unix.ENOENT) {
				var st unix.Stat_t
				if unix.Fstatat(dfd, string(tidName), &st, 0) == nil {
					return nil, errNoChildrenFile
				}
			}
			continue // thread exited
		}
		out = appendChildren(out, fd, data[:])
		unix.Close(fd)
	}
	return out, nil
}

// appendChildren appends the pids a children file lists ("123 456 ") to
// out, reading it through buf; a pid cut by the end of one read continues
// in the next.
func appendChildren(out []int, fd int, buf []byte) []int {
	n, digits := 0, false
	for {
		k, err := unix.Read(fd, buf)
		if errors.Is(err, unix.EINTR) {
			continue
		}
		if err != nil || k <= 0 {
			break
		}
		for _, c := range buf[:k] {
			if '0' <= c && c <= '9' {
				n, digits = n*10+int(c-'0'), true
				continue
			}
			if digits {
				out = append(out, n)
			}
			n, digits = 0, false
		}
	}
	if digits {
		out = append(out, n)
	}
	return out
}

// descendantsByScan is the fallback for kernels without the children file:
// one pass over every process's parent pid.
func descendantsByScan(root int) ([]int, error) {
	pids, err := allPids()
	if err != nil {
		return nil, err
	}
	kids := make(map[int][]int)
	for _, pid := range pids {
		if pp, err := ppid(pid); err == nil {
			kids[pp] = append(kids[pp], pid)
		}
	}
	var out []int
	queue := []int{root}
	seen := map[int]bool{root: true}
	for len(queue) > 0 && len(out) < maxTreeSize {
		p := queue[0]
		queue = queue[1:]
		for _, k := range kids[p] {
			if !seen[k] {
				seen[k] = true
				out = append(out, k)
				queue = append(queue, k)
			}
		}
	}
	return out, nil
}

func inTree(pid, root int) (bool, error) {
	if pid <= 0 || root <= 0 {
		return false, nil
	}
	p := pid
	for range maxTreeDepth {
		if p == root {
			return true, nil
		}
		if p <= 1 {
			return false, nil
		}
		next, err := ppid(p)
		if err != nil {
			if errors.Is(err, fs.ErrNotExist) || errors.Is(err, syscall.ESRCH) {
				return false, nil // exited mid-walk
			}
			return false, err
		}
		p = next
	}
	return false, nil
}

// ppid reads a process's parent pid from /proc/PID/stat. The command name
// (field 2) may contain spaces and parentheses, so fields are counted from
// the last ')'.
func ppid(pid int) (int, error) {
	data, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return 0, fmt.Errorf("read process status: %w", err)
	}
	s := string(data)
	i := strings.LastIndexByte(s, ')')
	if i < 0 {
		return 0, fmt.Errorf("parse /proc/%d/stat: no command name", pid)
	}
	fields := strings.Fields(s[i+1:])
	if len(fields) < 2 {
		return 0, fmt.Errorf("parse /proc/%d/stat: too few fields", pid)
	}
	pp, err := strconv.Atoi(fields[1])
	if err != nil {
		return 0, fmt.Errorf("parse /proc/%d/stat: %w", pid, err)
	}
	return pp, nil
}

func allPids() ([]int, error) {
	d, err := os.Open("/proc")
	if err != nil {
		return nil, fmt.Errorf("list processes: %w", err)
	}
	defer d.Close()
	names, err := d.Readdirnames(-1)
	if err != nil {
		return nil, fmt.Errorf("list processes: %w", err)
	}
	pids := make([]int, 0, len(names))
	for _, n := range names {
		if pid, err := strconv.Atoi(n); err == nil && pid > 0 {
			pids = append(pids, pid)
		}
	}
	return pids, nil
}

// Supported reports whether this OS can look up socket owners.
const Supported = true
