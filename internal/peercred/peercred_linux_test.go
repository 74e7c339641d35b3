package peercred

import (
	"encoding/binary"
	"encoding/hex"
	"errors"
	"net"
	"net/netip"
	"testing"
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
			client, err := net.Dial(tc.network, ln.Addr().String())
			if err != nil {
				t.Fatal(err)
			}
			defer client.Close()
			srv, err := ln.Accept()
			if err != nil {
				t.Fatal(err)
			}
			defer srv.Close()
			want := conn{
				own:    netip.MustParseAddrPort(client.LocalAddr().String()),
				remote: netip.MustParseAddrPort(client.RemoteAddr().String()),
			}
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
		})
	}
}
