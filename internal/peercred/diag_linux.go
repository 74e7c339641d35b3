package peercred

import (
	"encoding/binary"
	"errors"
	"fmt"
	"net/netip"
	"sync"
	"syscall"
	"time"
)

// Reading /proc/net/tcp walks every bucket of the kernel's connection hash
// table, which costs milliseconds on a large machine whether or not it
// holds sockets. sock_diag (NETLINK_SOCK_DIAG, the interface ss(8) uses)
// answers an exact four-tuple query with a hash lookup in microseconds, so
// it is tried first; the table scan remains for kernels or sandboxes where
// netlink is unavailable.

const (
	netlinkSockDiag     = 4  // NETLINK_SOCK_DIAG
	sockDiagByFamily    = 20 // SOCK_DIAG_BY_FAMILY
	inetDiagReqV2Len    = 56 // sizeof(struct inet_diag_req_v2)
	inetDiagMsgMinLen   = 72 // sizeof(struct inet_diag_msg)
	inetDiagMsgStateOff = 1
	inetDiagMsgIDOff    = 4 // struct inet_diag_sockid
	inetDiagMsgInodeOff = 68
	tcpListen           = 10 // TCP_LISTEN
	diagTimeout         = time.Second
)

// errDiagUnavailable means the netlink query could not be made at all (as
// opposed to "no such socket"), so the caller falls back to /proc.
var errDiagUnavailable = errors.New("sock_diag unavailable")

// diagSockets are netlink sockets kept open for every query: opening and
// closing one per handshake was the larger part of a lookup's cost when
// many plugins start at once. Up to maxDiagSockets queries run at once,
// each on a socket of its own (each is a single hash lookup in the
// kernel); more wait for a free socket, so a flood of connections to
// check opens no more than that many descriptors.
var diagSockets = struct {
	mu     sync.Mutex
	free   []*diagConn
	opened int
	freed  *sync.Cond
}{}

func init() { diagSockets.freed = sync.NewCond(&diagSockets.mu) }

const maxDiagSockets = 4

type diagConn struct {
	fd  int
	seq uint32
	buf []byte
}

// diagBufSize holds any answer to an exact query: one inet_diag_msg without
// extensions is 88 bytes with its header.
const diagBufSize = 4096

// diagInode asks the kernel for the inode of the socket whose own address is
// want.own and whose remote is want.remote. Both are unmapped addresses of
// one family.
func diagInode(want conn) (uint64, error) {
	c, err := takeDiag()
	if err != nil {
		return 0, err
	}
	c.seq++
	inode, err := diagQuery(c.fd, c.seq, want, c.buf)
	if errors.Is(err, errDiagUnavailable) {
		// The socket may be in a bad state (a reply cut short by the
		// timeout): start afresh next time.
		syscall.Close(c.fd)
		c = nil
	}
	giveDiag(c)
	return inode, err
}

// takeDiag returns a free socket, opens one if fewer than maxDiagSockets
// are open, or waits for one to be given back.
func takeDiag() (*diagConn, error) {
	d := &diagSockets
	d.mu.Lock()
	defer d.mu.Unlock()
	for {
		if n := len(d.free); n > 0 {
			c := d.free[n-1]
			d.free = d.free[:n-1]
			return c, nil
		}
		if d.opened < maxDiagSockets {
			fd, err := openDiagSocket()
			if err != nil {
				return nil, err
			}
			d.opened++
			return &diagConn{fd: fd, buf: make([]byte, diagBufSize)}, nil
		}
		d.freed.Wait()
	}
}

// giveDiag returns c to the free list; nil means its socket was closed.
func giveDiag(c *diagConn) {
	d := &diagSockets
	d.mu.Lock()
	if c == nil {
		d.opened--
	} else {
		d.free = append(d.free, c)
	}
	d.mu.Unlock()
	d.freed.Signal()
}

func openDiagSocket() (int, error) {
	fd, err := syscall.Socket(syscall.AF_NETLINK, syscall.SOCK_DGRAM|syscall.SOCK_CLOEXEC, netlinkSockDiag)
	if err != nil {
		return 0, fmt.Errorf("%w: %w", errDiagUnavailable, err)
	}
	tv := syscall.NsecToTimeval(diagTimeout.Nanoseconds())
	if err := syscall.SetsockoptTimeval(fd, syscall.SOL_SOCKET, syscall.SO_RCVTIMEO, &tv); err != nil {
		syscall.Close(fd)
		return 0, fmt.Errorf("%w: %w", errDiagUnavailable, err)
	}
	return fd, nil
}

// diagQuery sends one request on fd and reads its answer. Messages with
// another sequence number (the late answer to a query that timed out) are
// skipped.
func diagQuery(fd int, seq uint32, want conn, buf []byte) (uint64, error) {
	if err := syscall.Sendto(fd, diagRequest(want, seq), 0, &syscall.SockaddrNetlink{Family: syscall.AF_NETLINK}); err != nil {
		return 0, fmt.Errorf("%w: %w", errDiagUnavailable, err)
	}
	for {
		n, _, err := syscall.Recvfrom(fd, buf, 0)
		if errors.Is(err, syscall.EINTR) {
			continue
		}
		if err != nil {
			return 0, fmt.Errorf("%w: %w", errDiagUnavailable, err)
		}
		msgs, err := syscall.ParseNetlinkMessage(buf[:n])
		if err != nil {
			return 0, fmt.Errorf("%w: %w", errDiagUnavailable, err)
		}
		for _, m := range msgs {
			if m.Header.Seq != seq {
				continue
			}
			switch m.Header.Type {
			case syscall.NLMSG_ERROR:
				if len(m.Data) < 4 {
					return 0, errDiagUnavailable
				}
				errno := -int32(binary.NativeEndian.Uint32(m.Data))
				if errno == 0 {
					continue // an acknowledgement
				}
				if syscall.Errno(errno) == syscall.ENOENT {
					return 0, ErrNotFound
				}
				return 0, fmt.Errorf("%w: %w", errDiagUnavailable, syscall.Errno(errno))
			case sockDiagByFamily:
				if len(m.Data) < inetDiagMsgMinLen {
					return 0, errDiagUnavailable
				}
				if !diagAnswers(m.Data, want) {
					return 0, ErrNotFound
				}
				inode := uint64(binary.NativeEndian.Uint32(m.Data[inetDiagMsgInodeOff:]))
				if inode == 0 {
					return 0, ErrNotFound // TIME_WAIT or orphaned: nobody holds it
				}
				return inode, nil
			case syscall.NLMSG_DONE:
				return 0, ErrNotFound
			}
		}
	}
}

// diagAnswers reports whether msg, a struct inet_diag_msg, describes the
// connection asked for. When no connection matches, the kernel's exact
// lookup falls back to a socket listening on the asked-for own address and
// port (it uses the same lookup as an incoming packet), and answers with
// that: its owner has nothing to do with the connection.
func diagAnswers(msg []byte, want conn) bool {
	if msg[inetDiagMsgStateOff] == tcpListen {
		return false
	}
	id := msg[inetDiagMsgIDOff:]
	own, ok1 := diagAddr(msg[0], id[4:20])
	remote, ok2 := diagAddr(msg[0], id[20:36])
	return ok1 && ok2 &&
		netip.AddrPortFrom(own, binary.BigEndian.Uint16(id[0:])) == want.own &&
		netip.AddrPortFrom(remote, binary.BigEndian.Uint16(id[2:])) == want.remote
}

// diagAddr decodes an address of an inet_diag_sockid. An IPv6 socket
// connected to an IPv4 peer reports IPv4-mapped addresses; they are
// unmapped, as the asked-for ones are.
func diagAddr(family byte, b []byte) (netip.Addr, bool) {
	switch family {
	case syscall.AF_INET:
		return netip.AddrFrom4([4]byte(b[:4])), true
	case syscall.AF_INET6:
		return netip.AddrFrom16([16]byte(b[:16])).Unmap(), true
	}
	return netip.Addr{}, false
}

// diagRequest encodes an nlmsghdr and a struct inet_diag_req_v2 for an
// exact lookup (no NLM_F_DUMP). IPv4 pairs are asked for as AF_INET; the
// kernel then also finds IPv6 sockets connected to IPv4-mapped addresses,
// since both are hashed by their IPv4 addresses.
func diagRequest(want conn, seq uint32) []byte {
	b := make([]byte, syscall.NLMSG_HDRLEN+inetDiagReqV2Len)
	binary.NativeEndian.PutUint32(b[0:], uint32(len(b)))
	binary.NativeEndian.PutUint16(b[4:], sockDiagByFamily)
	binary.NativeEndian.PutUint16(b[6:], syscall.NLM_F_REQUEST)
	binary.NativeEndian.PutUint32(b[8:], seq)
	r := b[syscall.NLMSG_HDRLEN:]
	if want.own.Addr().Is4() {
		r[0] = syscall.AF_INET
	} else {
		r[0] = syscall.AF_INET6
	}
	r[1] = syscall.IPPROTO_TCP
	binary.NativeEndian.PutUint32(r[4:], 0xffffffff) // every state
	id := r[8:]
	binary.BigEndian.PutUint16(id[0:], want.own.Port())
	binary.BigEndian.PutUint16(id[2:], want.remote.Port())
	putDiagAddr(id[4:20], want.own.Addr())
	putDiagAddr(id[20:36], want.remote.Addr())
	// id[36:40] is the interface (any); the cookie is INET_DIAG_NOCOOKIE.
	binary.NativeEndian.PutUint32(id[40:], 0xffffffff)
	binary.NativeEndian.PutUint32(id[44:], 0xffffffff)
	return b
}

func putDiagAddr(dst []byte, addr netip.Addr) {
	if addr.Is4() {
		a := addr.As4()
		copy(dst, a[:])
		return
	}
	a := addr.As16()
	copy(dst, a[:])
}

// diagDumpBufSize holds any one part of a dump: the kernel fills a dump's
// messages into buffers of at most 32 KiB, and a receive into a smaller
// one would cut the rest off.
const diagDumpBufSize = 32 << 10

// diagListeners asks the kernel for the TCP sockets of a's family that
// listen on port, and returns the inodes of those whose own address is a
// or the wildcard address. For an IPv4 address the IPv6 sockets are asked
// for too: one listening on :: (or on a's IPv4-mapped form) accepts a's
// connections as well.
//
// It is a dump of the listening sockets only, filtered by port in the
// kernel: the connection table, whose size is what makes reading
// /proc/net/tcp slow, is not walked.
func diagListeners(a netip.Addr, port uint16) ([]uint64, error) {
	c, err := takeDiag()
	if err != nil {
		return nil, err
	}
	families := []byte{syscall.AF_INET6}
	if a.Is4() {
		families = []byte{syscall.AF_INET, syscall.AF_INET6}
	}
	buf := make([]byte, diagDumpBufSize)
	var out []uint64
	for _, family := range families {
		c.seq++
		out, err = diagDumpListeners(c.fd, c.seq, family, a, port, buf, out)
		if err != nil {
			break
		}
	}
	if err != nil {
		// The socket may hold the rest of a dump cut short: start afresh
		// next time.
		syscall.Close(c.fd)
		c = nil
	}
	giveDiag(c)
	return out, err
}

// diagDumpListeners sends one dump request for the listeners of family on
// port and appends the inodes of those that accept connections to a.
// Messages of other sequence numbers (late answers to an earlier query)
// are skipped; the dump ends with NLMSG_DONE.
func diagDumpListeners(fd int, seq uint32, family byte, a netip.Addr, port uint16, buf []byte, out []uint64) ([]uint64, error) {
	if err := syscall.Sendto(fd, diagListenRequest(family, port, seq), 0, &syscall.SockaddrNetlink{Family: syscall.AF_NETLINK}); err != nil {
		return out, fmt.Errorf("%w: %w", errDiagUnavailable, err)
	}
	for {
		n, _, err := syscall.Recvfrom(fd, buf, 0)
		if errors.Is(err, syscall.EINTR) {
			continue
		}
		if err != nil {
			return out, fmt.Errorf("%w: %w", errDiagUnavailable, err)
		}
		msgs, err := syscall.ParseNetlinkMessage(buf[:n])
		if err != nil {
			return out, fmt.Errorf("%w: %w", errDiagUnavailable, err)
		}
		for _, m := range msgs {
			if m.Header.Seq != seq {
				continue
			}
			switch m.Header.Type {
			case syscall.NLMSG_DONE:
				return out, nil
			case syscall.NLMSG_ERROR:
				if len(m.Data) < 4 {
					return out, errDiagUnavailable
				}
				if errno := -int32(binary.NativeEndian.Uint32(m.Data)); errno != 0 {
					return out, fmt.Errorf("%w: %w", errDiagUnavailable, syscall.Errno(errno))
				}
			case sockDiagByFamily:
				if len(m.Data) < inetDiagMsgMinLen {
					return out, errDiagUnavailable
				}
				if inode, ok := diagListenerAccepts(m.Data, a, port); ok {
					out = append(out, inode)
				}
			}
		}
	}
}

// diagListenerAccepts reports whether msg, a struct inet_diag_msg, is a
// socket listening on port whose own address is a or the wildcard, and
// returns its inode.
func diagListenerAccepts(msg []byte, a netip.Addr, port uint16) (uint64, bool) {
	if msg[inetDiagMsgStateOff] != tcpListen {
		return 0, false
	}
	id := msg[inetDiagMsgIDOff:]
	own, ok := diagAddr(msg[0], id[4:20])
	if !ok || binary.BigEndian.Uint16(id[0:]) != port || (own != a && !own.IsUnspecified()) {
		return 0, false
	}
	inode := uint64(binary.NativeEndian.Uint32(msg[inetDiagMsgInodeOff:]))
	return inode, inode != 0
}

// diagListenRequest encodes an nlmsghdr and a struct inet_diag_req_v2 for
// a dump of family's TCP sockets in the LISTEN state whose own port is
// port. The kernel compares the port itself while it walks its table of
// listeners, and with no other state asked for, it skips the connection
// table.
func diagListenRequest(family byte, port uint16, seq uint32) []byte {
	b := make([]byte, syscall.NLMSG_HDRLEN+inetDiagReqV2Len)
	binary.NativeEndian.PutUint32(b[0:], uint32(len(b)))
	binary.NativeEndian.PutUint16(b[4:], sockDiagByFamily)
	binary.NativeEndian.PutUint16(b[6:], syscall.NLM_F_REQUEST|syscall.NLM_F_DUMP)
	binary.NativeEndian.PutUint32(b[8:], seq)
	r := b[syscall.NLMSG_HDRLEN:]
	r[0] = family
	r[1] = syscall.IPPROTO_TCP
	binary.NativeEndian.PutUint32(r[4:], 1<<tcpListen)
	binary.BigEndian.PutUint16(r[8:], port) // id.idiag_sport; every other field of the id is zero
	return b
}
