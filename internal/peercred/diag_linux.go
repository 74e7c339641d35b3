package peercred

import (
	"encoding/binary"
	"errors"
	"fmt"
	"net/netip"
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
	inetDiagMsgInodeOff = 68
	diagTimeout         = time.Second
)

// errDiagUnavailable means the netlink query could not be made at all (as
// opposed to "no such socket"), so the caller falls back to /proc.
var errDiagUnavailable = errors.New("sock_diag unavailable")

// diagInode asks the kernel for the inode of the socket whose own address is
// want.own and whose remote is want.remote. Both are unmapped addresses of
// one family.
func diagInode(want conn) (uint64, error) {
	fd, err := syscall.Socket(syscall.AF_NETLINK, syscall.SOCK_DGRAM|syscall.SOCK_CLOEXEC, netlinkSockDiag)
	if err != nil {
		return 0, fmt.Errorf("%w: %w", errDiagUnavailable, err)
	}
	defer syscall.Close(fd)
	tv := syscall.NsecToTimeval(diagTimeout.Nanoseconds())
	if err := syscall.SetsockoptTimeval(fd, syscall.SOL_SOCKET, syscall.SO_RCVTIMEO, &tv); err != nil {
		return 0, fmt.Errorf("%w: %w", errDiagUnavailable, err)
	}
	if err := syscall.Sendto(fd, diagRequest(want), 0, &syscall.SockaddrNetlink{Family: syscall.AF_NETLINK}); err != nil {
		return 0, fmt.Errorf("%w: %w", errDiagUnavailable, err)
	}
	buf := make([]byte, 8192)
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

// diagRequest encodes an nlmsghdr and a struct inet_diag_req_v2 for an
// exact lookup (no NLM_F_DUMP). IPv4 pairs are asked for as AF_INET; the
// kernel then also finds IPv6 sockets connected to IPv4-mapped addresses,
// since both are hashed by their IPv4 addresses.
func diagRequest(want conn) []byte {
	b := make([]byte, syscall.NLMSG_HDRLEN+inetDiagReqV2Len)
	binary.NativeEndian.PutUint32(b[0:], uint32(len(b)))
	binary.NativeEndian.PutUint16(b[4:], sockDiagByFamily)
	binary.NativeEndian.PutUint16(b[6:], syscall.NLM_F_REQUEST)
	binary.NativeEndian.PutUint32(b[8:], 1) // sequence
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
