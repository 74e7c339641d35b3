//go:build linux

package peercred_test

import (
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/vmre/vmre/internal/handshaketest"
	"github.com/vmre/vmre/internal/peercred"
)

// Child modes: the test binary re-executes itself with childModeKey set.
const (
	childModeKey = "PEERCRED_TEST_CHILD"
	childAddrKey = "PEERCRED_TEST_ADDR"
)

func TestMain(m *testing.M) {
	switch os.Getenv(childModeKey) {
	case "":
		os.Exit(m.Run())
	case "connect":
		// Connect, report the local address, hold the connection until
		// stdin closes.
		c, err := net.Dial("tcp", os.Getenv(childAddrKey))
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(2)
		}
		fmt.Printf("conn %d %s\n", os.Getpid(), c.LocalAddr())
		_, _ = io.Copy(io.Discard, os.Stdin)
		os.Exit(0)
	case "fork-connect":
		// Start a grandchild that connects, so the socket belongs to a
		// descendant rather than to this process.
		cmd := exec.Command(os.Args[0])
		cmd.Env = append(os.Environ(), childModeKey+"=connect")
		cmd.Stdin, cmd.Stdout, cmd.Stderr = os.Stdin, os.Stdout, os.Stderr
		if err := cmd.Start(); err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(2)
		}
		fmt.Printf("parent %d %d\n", os.Getpid(), cmd.Process.Pid)
		_ = cmd.Wait()
		os.Exit(0)
	case "idle":
		fmt.Printf("idle %d\n", os.Getpid())
		_, _ = io.Copy(io.Discard, os.Stdin)
		os.Exit(0)
	default:
		os.Exit(3)
	}
}

// startChild re-executes the test binary in mode; when the test ends its
// stdin is closed and it is given 5 s to exit before it is killed.
func startChild(t *testing.T, mode, addr string) *handshaketest.Child {
	t.Helper()
	return handshaketest.StartChild(t, 5*time.Second, childModeKey+"="+mode, childAddrKey+"="+addr)
}

// fields waits for c's next line starting with prefix and returns its
// words after prefix.
func fields(t *testing.T, c *handshaketest.Child, prefix string) []string {
	t.Helper()
	return strings.Fields(c.Next(t, prefix))
}

func atoi(t *testing.T, s string) int {
	t.Helper()
	n, err := strconv.Atoi(s)
	if err != nil {
		t.Fatal(err)
	}
	return n
}

// listen opens a listener on network/addr and returns it with a channel of
// accepted connections; it skips the test if the address family is missing.
func listen(t *testing.T, network, addr string) (net.Listener, <-chan net.Conn) {
	t.Helper()
	ln, err := net.Listen(network, addr)
	if err != nil {
		t.Skipf("listen %s %s: %v", network, addr, err)
	}
	t.Cleanup(func() { _ = ln.Close() })
	conns := make(chan net.Conn, 16)
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			t.Cleanup(func() { _ = c.Close() })
			conns <- c
		}
	}()
	return ln, conns
}

func accept(t *testing.T, conns <-chan net.Conn) net.Conn {
	t.Helper()
	select {
	case c := <-conns:
		return c
	case <-time.After(10 * time.Second):
		t.Fatal("no connection accepted")
		return nil
	}
}

func addrs(t *testing.T, c net.Conn) (local, peer netip.AddrPort) {
	t.Helper()
	local, err := netip.ParseAddrPort(c.LocalAddr().String())
	if err != nil {
		t.Fatal(err)
	}
	peer, err = netip.ParseAddrPort(c.RemoteAddr().String())
	if err != nil {
		t.Fatal(err)
	}
	return local, peer
}

func TestLookupChild(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct{ name, network, addr string }{
		{"ipv4", "tcp4", "127.0.0.1:0"},
		{"ipv6", "tcp6", "[::1]:0"},
		{"dual-stack listener, ipv4 client", "tcp", "127.0.0.1:0"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			ln, conns := listen(t, tc.network, tc.addr)
			c := startChild(t, "connect", ln.Addr().String())
			f := fields(t, c, "conn")
			pid := atoi(t, f[0])
			local, peer := addrs(t, accept(t, conns))
			if peer.String() != f[1] {
				t.Fatalf("server sees peer %s, child says %s", peer, f[1])
			}
			got, err := peercred.Lookup(local, peer, pid)
			if err != nil {
				t.Fatal(err)
			}
			if got != (peercred.Owner{Pid: pid, InTree: true}) {
				t.Fatalf("Lookup = %+v, want pid %d in tree", got, pid)
			}
		})
	}
}

// TestLookupMappedAddresses: a dual-stack listener reports IPv4 peers as
// IPv4-mapped IPv6 in some code paths; both spellings must work.
func TestLookupMappedAddresses(t *testing.T) {
	t.Parallel()
	ln, conns := listen(t, "tcp4", "127.0.0.1:0")
	c := startChild(t, "connect", ln.Addr().String())
	pid := atoi(t, fields(t, c, "conn")[0])
	local, peer := addrs(t, accept(t, conns))
	mapped := func(ap netip.AddrPort) netip.AddrPort {
		return netip.AddrPortFrom(netip.AddrFrom16(ap.Addr().As16()), ap.Port())
	}
	got, err := peercred.Lookup(mapped(local), mapped(peer), pid)
	if err != nil {
		t.Fatal(err)
	}
	if !got.InTree || got.Pid != pid {
		t.Fatalf("Lookup = %+v, want pid %d in tree", got, pid)
	}
}

func TestLookupGrandchild(t *testing.T) {
	t.Parallel()
	ln, conns := listen(t, "tcp4", "127.0.0.1:0")
	c := startChild(t, "fork-connect", ln.Addr().String())
	var root, grandchild, connPid int
	for root == 0 || connPid == 0 {
		// No deadline: Lines closes when the child exits, and a child
		// that hangs is the test binary's -timeout to report.
		l, ok := <-c.Lines
		if !ok {
			t.Fatal("child exited before it reported its pids")
		}
		f := strings.Fields(l)
		switch {
		case len(f) == 3 && f[0] == "parent":
			root, grandchild = atoi(t, f[1]), atoi(t, f[2])
		case len(f) == 3 && f[0] == "conn":
			connPid = atoi(t, f[1])
		}
	}
	if connPid != grandchild {
		t.Fatalf("connection from pid %d, want grandchild %d", connPid, grandchild)
	}
	local, peer := addrs(t, accept(t, conns))
	got, err := peercred.Lookup(local, peer, root)
	if err != nil {
		t.Fatal(err)
	}
	if got != (peercred.Owner{Pid: grandchild, InTree: true}) {
		t.Fatalf("Lookup = %+v, want grandchild %d in tree of %d", got, grandchild, root)
	}
	kids, err := peercred.Descendants(root)
	if err != nil {
		t.Fatal(err)
	}
	if len(kids) != 1 || kids[0] != grandchild {
		t.Fatalf("Descendants(%d) = %v, want [%d]", root, kids, grandchild)
	}
}

// TestLookupForeign: the socket belongs to a process outside the launched
// tree (a sibling), found by the full scan and reported as foreign.
func TestLookupForeign(t *testing.T) {
	t.Parallel()
	ln, conns := listen(t, "tcp4", "127.0.0.1:0")
	launched := startChild(t, "idle", "")
	root := atoi(t, fields(t, launched, "idle")[0])
	foreign := startChild(t, "connect", ln.Addr().String())
	foreignPid := atoi(t, fields(t, foreign, "conn")[0])
	local, peer := addrs(t, accept(t, conns))
	got, err := peercred.Lookup(local, peer, root)
	if err != nil {
		t.Fatal(err)
	}
	if got != (peercred.Owner{Pid: foreignPid}) {
		t.Fatalf("Lookup = %+v, want foreign pid %d not in tree", got, foreignPid)
	}
}

// TestLookupInProcess: the engine itself (this test process) owns the
// client socket; it is the launched process's parent, not in its tree.
func TestLookupInProcess(t *testing.T) {
	t.Parallel()
	ln, conns := listen(t, "tcp4", "127.0.0.1:0")
	launched := startChild(t, "idle", "")
	root := atoi(t, fields(t, launched, "idle")[0])
	client, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = client.Close() })
	local, peer := addrs(t, accept(t, conns))
	got, err := peercred.Lookup(local, peer, root)
	if err != nil {
		t.Fatal(err)
	}
	if got != (peercred.Owner{Pid: os.Getpid()}) {
		t.Fatalf("Lookup = %+v, want this process %d, not in tree", got, os.Getpid())
	}
	// With this process as root, the same socket is in the tree.
	got, err = peercred.Lookup(local, peer, os.Getpid())
	if err != nil || !got.InTree {
		t.Fatalf("Lookup(root=self) = %+v, %v; want in tree", got, err)
	}
}

// TestLookupGone: once the client has exited, its socket has no owner.
func TestLookupGone(t *testing.T) {
	t.Parallel()
	ln, conns := listen(t, "tcp4", "127.0.0.1:0")
	c := startChild(t, "connect", ln.Addr().String())
	pid := atoi(t, fields(t, c, "conn")[0])
	conn := accept(t, conns)
	local, peer := addrs(t, conn)
	_ = c.Stdin.Close()
	if err := c.Cmd.Wait(); err != nil {
		t.Fatal(err)
	}
	_, err := peercred.Lookup(local, peer, pid)
	if !errors.Is(err, peercred.ErrNotFound) {
		t.Fatalf("Lookup after exit: err = %v, want ErrNotFound", err)
	}
}

func TestLookupBadInput(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name        string
		local, peer netip.AddrPort
	}{
		{"zero", netip.AddrPort{}, netip.AddrPort{}},
		{"no port", netip.MustParseAddrPort("127.0.0.1:0"), netip.MustParseAddrPort("127.0.0.1:0")},
		{"mixed families", netip.MustParseAddrPort("127.0.0.1:1"), netip.MustParseAddrPort("[::1]:2")},
		{"nobody", netip.MustParseAddrPort("127.0.0.1:1"), netip.MustParseAddrPort("127.0.0.1:2")},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			if _, err := peercred.Lookup(tc.local, tc.peer, os.Getpid()); !errors.Is(err, peercred.ErrNotFound) {
				t.Fatalf("err = %v, want ErrNotFound", err)
			}
		})
	}
}

func TestInTree(t *testing.T) {
	t.Parallel()
	self, parent := os.Getpid(), os.Getppid()
	for _, tc := range []struct {
		name      string
		pid, root int
		want      bool
	}{
		{"self", self, self, true},
		{"child of parent", self, parent, true},
		{"child of init", self, 1, true},
		{"parent of self", parent, self, false},
		{"init", 1, self, false},
		{"no such pid", 1 << 30, self, false},
		{"no root", self, 0, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			got, err := peercred.InTree(tc.pid, tc.root)
			if err != nil {
				t.Fatal(err)
			}
			if got != tc.want {
				t.Fatalf("InTree(%d, %d) = %v, want %v", tc.pid, tc.root, got, tc.want)
			}
		})
	}
}

func TestHoldsGone(t *testing.T) {
	t.Parallel()
	if peercred.Holds(1<<30, 1) || peercred.Holds(0, 1) || peercred.Holds(-1, 1) {
		t.Fatal("a missing process holds a socket")
	}
}

// TestHoldsAny: a process holds its own listener, found among other
// inodes; it does not hold a socket another process listens on; a process
// that is gone holds nothing.
func TestHoldsAny(t *testing.T) {
	t.Parallel()
	ln, _ := listen(t, "tcp4", "127.0.0.1:0")
	own, err := peercred.ListenerInodes(netip.MustParseAddrPort(ln.Addr().String()))
	if err != nil || len(own) == 0 {
		t.Fatalf("listener inodes: %v, %v", own, err)
	}
	if !peercred.HoldsAny(os.Getpid(), append([]uint64{1}, own...)) {
		t.Errorf("this process does not hold its listener %v", own)
	}

	child := startChild(t, "idle", "")
	pid := atoi(t, fields(t, child, "idle")[0])
	if peercred.HoldsAny(pid, own) {
		t.Errorf("child %d holds this process's listener", pid)
	}
	_ = child.Stdin.Close()
	_ = child.Cmd.Wait()
	for _, p := range []int{pid, 0, -1} {
		if peercred.HoldsAny(p, own) {
			t.Errorf("pid %d, gone or invalid, holds a socket", p)
		}
	}
}

// TestLookupChurn looks up a live connection while short-lived processes
// start and exit around it, so scans meet vanishing /proc entries.
func TestLookupChurn(t *testing.T) {
	t.Parallel()
	ln, conns := listen(t, "tcp4", "127.0.0.1:0")
	launched := startChild(t, "idle", "")
	root := atoi(t, fields(t, launched, "idle")[0])
	foreign := startChild(t, "connect", ln.Addr().String())
	foreignPid := atoi(t, fields(t, foreign, "conn")[0])
	local, peer := addrs(t, accept(t, conns))

	stop := make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		for i := 0; i < 200; i++ {
			select {
			case <-stop:
				return
			default:
			}
			_ = exec.Command("true").Run()
		}
	}()
	for i := 0; i < 50; i++ {
		got, err := peercred.Lookup(local, peer, root)
		if err != nil {
			t.Fatal(err)
		}
		if got != (peercred.Owner{Pid: foreignPid}) {
			t.Fatalf("Lookup = %+v, want foreign %d", got, foreignPid)
		}
	}
	close(stop)
	wg.Wait()
}

func BenchmarkLookupInTree(b *testing.B) {
	ln, err := net.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	defer ln.Close()
	client, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		b.Fatal(err)
	}
	defer client.Close()
	srv, err := ln.Accept()
	if err != nil {
		b.Fatal(err)
	}
	defer srv.Close()
	local := netip.MustParseAddrPort(srv.LocalAddr().String())
	peer := netip.MustParseAddrPort(srv.RemoteAddr().String())
	for _, bc := range []struct {
		name string
		root int
	}{{"fast path", os.Getpid()}, {"full scan", os.Getppid()}} {
		b.Run(bc.name, func(b *testing.B) {
			for b.Loop() {
				if _, err := peercred.Lookup(local, peer, bc.root); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// BenchmarkHolds measures the descriptor scan behind every peer check, in
// this process with 16 more files open than usual (about what a grpc-go
// plugin holds at its handshake): a connection opened after them, as a
// plugin's handshake connection is (its descriptor is the first tried),
// and one opened before them (found only after the others).
func BenchmarkHolds(b *testing.B) {
	ln, err := net.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	defer ln.Close()
	inodeOf := func() uint64 {
		c, err := net.Dial("tcp", ln.Addr().String())
		if err != nil {
			b.Fatal(err)
		}
		b.Cleanup(func() { c.Close() })
		s, err := ln.Accept()
		if err != nil {
			b.Fatal(err)
		}
		b.Cleanup(func() { s.Close() })
		inode, err := peercred.SocketInode(netip.MustParseAddrPort(s.LocalAddr().String()), netip.MustParseAddrPort(s.RemoteAddr().String()))
		if err != nil {
			b.Fatal(err)
		}
		return inode
	}
	oldest := inodeOf()
	for range 16 {
		f, err := os.Open(os.DevNull)
		if err != nil {
			b.Fatal(err)
		}
		b.Cleanup(func() { f.Close() })
	}
	newest := inodeOf()
	for _, bc := range []struct {
		name  string
		inode uint64
	}{{"newest descriptor", newest}, {"oldest descriptor", oldest}} {
		b.Run(bc.name, func(b *testing.B) {
			for b.Loop() {
				if !peercred.Holds(os.Getpid(), bc.inode) {
					b.Fatal("socket not found")
				}
			}
		})
	}
}

// TestTreeSockets: the sockets of a launched tree include a connection its
// grandchild holds, with the grandchild's pid, and not one a process
// outside the tree holds; a tree whose root is gone is ErrNotFound.
func TestTreeSockets(t *testing.T) {
	t.Parallel()
	ln, conns := listen(t, "tcp4", "127.0.0.1:0")
	launched := startChild(t, "fork-connect", ln.Addr().String())
	var root, grandchild int
	for root == 0 || grandchild == 0 { // the two lines come in either order
		l, ok := <-launched.Lines
		if !ok {
			t.Fatal("child exited")
		}
		switch f := strings.Fields(l); {
		case len(f) == 3 && f[0] == "parent":
			root = atoi(t, f[1])
		case len(f) == 3 && f[0] == "conn":
			grandchild = atoi(t, f[1])
		}
	}
	inTree := accept(t, conns)
	foreign := startChild(t, "connect", ln.Addr().String())
	fields(t, foreign, "conn")
	outside := accept(t, conns)

	inode := func(c net.Conn) uint64 {
		local, peer := addrs(t, c)
		n, err := peercred.SocketInode(local, peer)
		if err != nil {
			t.Fatal(err)
		}
		return n
	}
	socks, err := peercred.TreeSockets(root)
	if err != nil {
		t.Fatal(err)
	}
	if got := socks[inode(inTree)]; got != grandchild {
		t.Errorf("the tree's connection: holder %d, want grandchild %d", got, grandchild)
	}
	if got, ok := socks[inode(outside)]; ok {
		t.Errorf("a foreign process's connection is in the tree's sockets (holder %d)", got)
	}

	gone := startChild(t, "idle", "")
	pid := atoi(t, fields(t, gone, "idle")[0])
	_ = gone.Stdin.Close()
	_ = gone.Cmd.Wait()
	if _, err := peercred.TreeSockets(pid); !errors.Is(err, peercred.ErrNotFound) {
		t.Errorf("TreeSockets of a reaped process: %v, want ErrNotFound", err)
	}
}
