package peercred

import (
	"encoding/binary"
	"encoding/hex"
	"errors"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"syscall"
	"testing"
	"time"
)

// kernelHex renders addr the way /proc/net/tcp does: each 32-bit word of
// the network-order bytes printed as a native-endian number.
func kernelHex(addr netip.Addr) string {
	b := addr.AsSlice()
	out := make([]byte, len(b))
	for i := 0; i < len(b); i += 4 {
		binary.BigEndian.PutUint32(out[i:], binary.NativeEndian.Uint32(b[i:]))
	}
	return hex.EncodeToString(out)
}

func TestDecodeAddr(t *testing.T) {
	t.Parallel()
	for _, s := range []string{"127.0.0.1", "10.1.2.3", "::1", "::ffff:127.0.0.1", "fe80::1234:5678:9abc:def0"} {
		addr := netip.MustParseAddr(s)
		got, ok := decodeAddr(kernelHex(addr))
		if !ok || got != addr {
			t.Errorf("decodeAddr(%s) = %v, %v; want %v", kernelHex(addr), got, ok, addr)
		}
	}
	if binary.NativeEndian.Uint16([]byte{1, 0}) == 1 {
		// The example from proc(5) on a little-endian machine.
		if got, _ := decodeAddr("0100007F"); got != netip.MustParseAddr("127.0.0.1") {
			t.Errorf("decodeAddr(0100007F) = %v, want 127.0.0.1", got)
		}
	}
	for _, bad := range []string{"", "0100007", "zz00007F", "0100007F00"} {
		if _, ok := decodeAddr(bad); ok {
			t.Errorf("decodeAddr(%q) succeeded", bad)
		}
	}
}

func TestMatchLine(t *testing.T) {
	t.Parallel()
	want := conn{own: netip.MustParseAddrPort("127.0.0.1:40000"), remote: netip.MustParseAddrPort("127.0.0.1:8080")}
	own, remote := kernelHex(want.own.Addr())+":9C40", kernelHex(want.remote.Addr())+":1F90"
	line := "   1: " + own + " " + remote + " 01 00000000:00000000 00:00000000 00000000  1000        0 424242 1 0000000000000000 20 4 30 10 -1\n"
	if inode, ok := matchLine(line, want, ":9C40", ":1F90"); !ok || inode != 424242 {
		t.Fatalf("matchLine = %d, %v; want 424242", inode, ok)
	}
	swapped := "   1: " + remote + " " + own + " 01 00000000:00000000 00:00000000 00000000  1000        0 424242 1\n"
	if _, ok := matchLine(swapped, want, ":9C40", ":1F90"); ok {
		t.Fatal("matched the server side of the connection")
	}
	timeWait := "   1: " + own + " " + remote + " 06 00000000:00000000 03:00000F8B 00000000     0        0 0 3\n"
	if _, ok := matchLine(timeWait, want, ":9C40", ":1F90"); ok {
		t.Fatal("matched a socket with inode 0")
	}
}

// connectTo opens a connection to ln, closed when the test ends, and
// returns its client side as sock_diag names it (own = the client's
// address, remote = the listener's).
func connectTo(t *testing.T, ln net.Listener) conn {
	t.Helper()
	c, err := net.Dial(ln.Addr().Network(), ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	s, err := ln.Accept()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return conn{own: netip.MustParseAddrPort(c.LocalAddr().String()), remote: netip.MustParseAddrPort(c.RemoteAddr().String())}
}

// TestDiagAgreesWithTable: the netlink query and the /proc table scan find
// the same inode for live IPv4 and IPv6 connections, and agree that a
// missing one is missing.
func TestDiagAgreesWithTable(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct{ network, addr, table string }{
		{"tcp4", "127.0.0.1:0", "/proc/net/tcp"},
		{"tcp6", "[::1]:0", "/proc/net/tcp6"},
	} {
		t.Run(tc.network, func(t *testing.T) {
			t.Parallel()
			ln, err := net.Listen(tc.network, tc.addr)
			if err != nil {
				t.Skip(err)
			}
			defer ln.Close()
			want := connectTo(t, ln)
			fromDiag, err := diagInode(want)
			if err != nil {
				t.Fatal(err)
			}
			fromTable, err := findInTable(tc.table, want)
			if err != nil {
				t.Fatal(err)
			}
			if fromDiag != fromTable || fromDiag == 0 {
				t.Fatalf("diag inode %d, table inode %d", fromDiag, fromTable)
			}
			// The server's side is another socket.
			server := conn{own: want.remote, remote: want.own}
			if other, err := diagInode(server); err != nil || other == fromDiag {
				t.Fatalf("server side: inode %d, %v", other, err)
			}
			missing := conn{own: want.own, remote: netip.AddrPortFrom(want.remote.Addr(), 1)}
			if _, err := diagInode(missing); !errors.Is(err, ErrNotFound) {
				t.Fatalf("missing socket: %v, want ErrNotFound", err)
			}
			if _, err := findInTable(tc.table, missing); !errors.Is(err, ErrNotFound) {
				t.Fatalf("missing socket in table: %v, want ErrNotFound", err)
			}
			// No connection from port P, but a listener on P: the kernel's
			// exact lookup falls back to listeners and answers with that
			// one, which must not count as the connection. (The listener
			// is bound to loopback, like every listener in these tests;
			// the kernel's fallback treats a wildcard one the same way.)
			other, err := net.Listen(tc.network, tc.addr)
			if err != nil {
				t.Fatal(err)
			}
			defer other.Close()
			fromListener := conn{own: netip.MustParseAddrPort(other.Addr().String()), remote: want.remote}
			if inode, err := diagInode(fromListener); !errors.Is(err, ErrNotFound) {
				t.Fatalf("no connection from a listening port: inode %d, %v; want ErrNotFound", inode, err)
			}
			if _, err := findInTable(tc.table, fromListener); !errors.Is(err, ErrNotFound) {
				t.Fatalf("no connection from a listening port, in table: %v, want ErrNotFound", err)
			}
			if _, err := SocketInode(fromListener.remote, fromListener.own); !errors.Is(err, ErrNotFound) {
				t.Fatalf("SocketInode for no connection from a listening port: %v, want ErrNotFound", err)
			}
		})
	}
}

// TestListenersAgreeWithTable: the netlink dump of listeners and the /proc
// table scan find the same listening sockets; an IPv4 and an IPv6 listener
// on the same port each count for their own address only; a port where a
// connection but no listener is, and a port nobody uses, have none.
func TestListenersAgreeWithTable(t *testing.T) {
	t.Parallel()
	v4, err := net.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer v4.Close()
	port := netip.MustParseAddrPort(v4.Addr().String()).Port()
	c := connectTo(t, v4)
	loop4, loop6 := netip.MustParseAddr("127.0.0.1"), netip.IPv6Loopback()
	both := func(a netip.Addr, p uint16) []uint64 {
		t.Helper()
		fromDiag, err := diagListeners(a, p)
		if err != nil {
			t.Fatalf("diagListeners(%s, %d): %v", a, p, err)
		}
		fromTable, err := listenersInTables(a, p)
		if err != nil {
			t.Fatalf("listenersInTables(%s, %d): %v", a, p, err)
		}
		slices.Sort(fromDiag)
		slices.Sort(fromTable)
		if !slices.Equal(fromDiag, fromTable) {
			t.Fatalf("listeners of %s port %d: diag %v, table %v", a, p, fromDiag, fromTable)
		}
		return fromDiag
	}
	want4 := both(loop4, port)
	if len(want4) != 1 || want4[0] == 0 {
		t.Fatalf("IPv4 listener: inodes %v, want one", want4)
	}
	if got := both(loop4, c.own.Port()); len(got) != 0 {
		t.Fatalf("a connection's port: listeners %v, want none", got)
	}
	if got := both(loop6, port); len(got) != 0 {
		t.Fatalf("::1 on the IPv4 listener's port: listeners %v, want none", got)
	}
	v6, err := net.Listen("tcp6", netip.AddrPortFrom(loop6, port).String())
	if err != nil {
		t.Skip(err) // no IPv6 loopback, or the port is taken there
	}
	defer v6.Close()
	want6 := both(loop6, port)
	if len(want6) != 1 || want6[0] == want4[0] {
		t.Fatalf("IPv6 listener: inodes %v (IPv4 one %v), want one other", want6, want4)
	}
	if got := both(loop4, port); !slices.Equal(got, want4) {
		t.Fatalf("IPv4 listener next to an IPv6 one: inodes %v, want %v", got, want4)
	}
	v4.Close()
	// A child that a parallel test forks holds a copy of every descriptor
	// until its exec, so the closed listener's socket may live on for a
	// moment, and the two lookups (not atomic) may see it or not. Gone it
	// must be, from both, once such a copy is: look again while it is not.
	for try := 0; ; try++ {
		fromDiag, err := diagListeners(loop4, port)
		if err != nil {
			t.Fatal(err)
		}
		fromTable, err := listenersInTables(loop4, port)
		if err != nil {
			t.Fatal(err)
		}
		if len(fromDiag) == 0 && len(fromTable) == 0 {
			break
		}
		if try == 500 { // 5 s: far beyond a fork-to-exec window
			t.Fatalf("closed listener: inodes diag %v, table %v, want none", fromDiag, fromTable)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// Many lookups at once share the kept netlink socket or open their own;
// each gets its own connection's inode, as the table says.
func TestDiagConcurrent(t *testing.T) {
	t.Parallel()
	ln, err := net.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	const conns = 8
	wants := make([]conn, conns)
	inodes := make([]uint64, conns)
	for i := range conns {
		wants[i] = connectTo(t, ln)
		if inodes[i], err = findInTable("/proc/net/tcp", wants[i]); err != nil {
			t.Fatal(err)
		}
	}
	var wg sync.WaitGroup
	for i := range conns {
		wg.Go(func() {
			for range 200 {
				got, err := diagInode(wants[i])
				if err != nil || got != inodes[i] {
					t.Errorf("conn %d: inode %d, %v; want %d", i, got, err, inodes[i])
					return
				}
			}
		})
	}
	wg.Wait()
}

// An answer left on the kept socket by an earlier query (one that gave up
// waiting) carries another sequence number and is not taken for the next
// query's answer.
func TestDiagSkipsStaleAnswer(t *testing.T) {
	ln, err := net.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	want := [2]conn{connectTo(t, ln), connectTo(t, ln)}
	fd, err := openDiagSocket()
	if err != nil {
		t.Fatal(err)
	}
	defer syscall.Close(fd)
	// The stale query: sent, never read.
	if err := syscall.Sendto(fd, diagRequest(want[0], 7), 0, &syscall.SockaddrNetlink{Family: syscall.AF_NETLINK}); err != nil {
		t.Fatal(err)
	}
	got, err := diagQuery(fd, 8, want[1], make([]byte, diagBufSize))
	if err != nil {
		t.Fatal(err)
	}
	wantInode, err := findInTable("/proc/net/tcp", want[1])
	if err != nil {
		t.Fatal(err)
	}
	if got != wantInode {
		t.Fatalf("inode %d, want %d (the stale answer was taken)", got, wantInode)
	}
}

func TestAppendDirentNumbers(t *testing.T) {
	t.Parallel()
	dirent := func(name string) []byte {
		reclen := (19 + len(name) + 1 + 7) &^ 7
		b := make([]byte, reclen)
		binary.NativeEndian.PutUint16(b[16:], uint16(reclen))
		copy(b[19:], name)
		return b
	}
	var buf []byte
	for _, name := range []string{".", "..", "0", "17", "x1", "123456789", "1234567890", "4"} {
		buf = append(buf, dirent(name)...)
	}
	got := appendDirentNumbers(nil, buf)
	if want := []int{0, 17, 123456789, 4}; !slices.Equal(got, want) {
		t.Fatalf("numbers %v, want %v", got, want)
	}
	// A record length pointing past the buffer, or below the header, ends
	// the parse with what came before.
	bad := append(dirent("5"), dirent("6")...)
	binary.NativeEndian.PutUint16(bad[len(dirent("5"))+16:], 4000)
	if got := appendDirentNumbers(nil, bad); !slices.Equal(got, []int{5}) {
		t.Fatalf("with a bad record length: %v, want [5]", got)
	}
	zero := dirent("9")
	binary.NativeEndian.PutUint16(zero[16:], 0)
	if got := appendDirentNumbers(nil, zero); len(got) != 0 {
		t.Fatalf("with a zero record length: %v, want none", got)
	}
}

// A children file's pids are read whole whatever the buffer cuts.
func TestAppendChildren(t *testing.T) {
	t.Parallel()
	path := filepath.Join(t.TempDir(), "children")
	if err := os.WriteFile(path, []byte("1 22 333 4444 55555"), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, size := range []int{1, 2, 3, 7, 512} {
		fd, err := syscall.Open(path, syscall.O_RDONLY|syscall.O_CLOEXEC, 0)
		if err != nil {
			t.Fatal(err)
		}
		got := appendChildren([]int{7}, fd, make([]byte, size))
		syscall.Close(fd)
		if want := []int{7, 1, 22, 333, 4444, 55555}; !slices.Equal(got, want) {
			t.Errorf("buffer of %d: %v, want %v", size, got, want)
		}
	}
}

// TestHoldsHint: Holds remembers the number of the descriptor it found a
// socket at and reads that one first next time; a remembered number that
// is another socket, a closed descriptor or no socket at all only sends it
// on to the full walk, and never admits a socket nobody holds. Not
// parallel: the hint is process-wide, and other tests' Holds would move it.
func TestHoldsHint(t *testing.T) {
	sock := func() (fd int, inode uint64, closeIt func()) {
		t.Helper()
		fd, err := syscall.Socket(syscall.AF_INET, syscall.SOCK_STREAM|syscall.SOCK_CLOEXEC, 0)
		if err != nil {
			t.Fatal(err)
		}
		closeIt = sync.OnceFunc(func() { _ = syscall.Close(fd) })
		t.Cleanup(closeIt)
		var st syscall.Stat_t
		if err := syscall.Fstat(fd, &st); err != nil {
			t.Fatal(err)
		}
		return fd, st.Ino, closeIt
	}
	self := os.Getpid()
	aFd, aInode, _ := sock()
	bFd, bInode, closeB := sock()
	devNull, err := os.Open(os.DevNull)
	if err != nil {
		t.Fatal(err)
	}
	defer devNull.Close()

	check := func(name string, hint int, inode uint64, want bool, wantHint int) {
		t.Helper()
		holdsHint.Store(int32(hint) + 1)
		if got := Holds(self, inode); got != want {
			t.Errorf("%s: Holds = %v, want %v", name, got, want)
		}
		if got := int(holdsHint.Load()) - 1; got != wantHint {
			t.Errorf("%s: hint afterwards = %d, want %d", name, got, wantHint)
		}
	}
	check("no hint yet", -1, aInode, true, aFd)
	check("hint is the socket", aFd, aInode, true, aFd)
	check("hint is another socket", aFd, bInode, true, bFd)
	check("hint is not a socket", int(devNull.Fd()), aInode, true, aFd)
	check("socket nobody holds", aFd, aInode+1<<40, false, aFd)
	closeB()
	check("hint is a closed descriptor", bFd, bInode, false, bFd)
}
