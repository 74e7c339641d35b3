// Package peercred finds the process at the other end of a loopback TCP
// connection and decides whether it belongs to a given process tree.
//
// The handshake server uses it to recognise the plugin it launched without a
// shared secret: a plugin built against avalanchego or luxd connects with a
// plain grpc-go client and cannot present vmre's token, but the socket it
// connects from is owned by its own process. On Linux the connection's
// addresses are mapped to a socket inode by the kernel's sock_diag netlink
// interface (the one ss(8) uses), or, where that is unavailable, by reading
// /proc/net/tcp and /proc/net/tcp6; /proc/PID/fd links then name the
// processes that hold that inode. Other operating systems return
// [ErrNotSupported].
//
// The answer is a snapshot: processes come and go while /proc is read, and a
// pid can be reused once its process has been reaped. Every function
// tolerates processes vanishing mid-scan (they are skipped), and callers
// should treat "not found" as "not allowed".
package peercred

import (
	"errors"
	"net/netip"
)

var (
	// ErrNotSupported is returned on operating systems where socket owners
	// cannot be looked up.
	ErrNotSupported = errors.New("peer credentials not supported on this OS")
	// ErrNotFound is returned when no socket with the given addresses
	// exists, or no visible process holds it (it closed, or belongs to a
	// process this one may not inspect).
	ErrNotFound = errors.New("peer socket not found")
	// ErrIncomplete is returned by [TreeSockets] when some process of the
	// tree could not be inspected: a socket missing from its answer may
	// still be the tree's.
	ErrIncomplete = errors.New("process tree only partly readable")
)

// Owner is the outcome of [Lookup].
type Owner struct {
	// Pid is a process holding the peer's socket.
	Pid int
	// InTree reports whether Pid is the root process of the lookup or one of
	// its descendants.
	InTree bool
}

// Lookup finds the process that holds the client side of a TCP connection
// and whether it is root or a descendant of root.
//
// local and peer are the connection's addresses as the server sees them:
// local is the server's own address (the listener's), peer the client's
// ([net.Conn.RemoteAddr]). IPv4, IPv6 and IPv4-mapped IPv6 addresses are
// accepted; zones are ignored.
//
// The launched tree is searched first (root, then its descendants), so the
// common case reads only a handful of /proc entries; only if none of them
// holds the socket are all processes scanned. When several processes share
// the socket, one in the tree wins. Lookup returns an error wrapping
// [ErrNotFound] when nobody visible holds the socket, and
// [ErrNotSupported] off Linux. It is safe for concurrent use and takes no
// context: it blocks while it reads /proc and while it waits for the
// kernel's sock_diag answer, normally microseconds, but up to the netlink
// receive timeout of 1 s, after which it falls back to /proc/net/tcp. On
// Linux the first lookup opens a netlink socket (close-on-exec) that stays
// open for later ones.
func Lookup(local, peer netip.AddrPort, root int) (Owner, error) {
	return lookup(local, peer, root)
}

// SocketInode returns the inode of the TCP socket whose own address is peer
// and whose remote address is local: the client side of a connection that a
// server listening on local accepted from peer. It returns an error wrapping
// [ErrNotFound] if there is none (or only a closed one); a socket listening
// on peer's address is not it. It blocks like [Lookup], up to the 1 s
// netlink receive timeout.
func SocketInode(local, peer netip.AddrPort) (uint64, error) {
	return socketInode(local, peer)
}

// ListenerInodes returns the inodes of the TCP sockets listening where a
// connection to addr would be accepted: on addr itself or on the wildcard
// address of its port, in this network namespace. It asks sock_diag for
// the listeners on addr's port (microseconds, however many connections the
// host has), or, where netlink is unavailable, reads /proc/net/tcp and
// /proc/net/tcp6 (milliseconds on a host with many sockets). It returns an
// error wrapping [ErrNotFound] when nothing listens there, and
// [ErrNotSupported] off Linux. It blocks like [Lookup], up to the 1 s
// netlink receive timeout.
func ListenerInodes(addr netip.AddrPort) ([]uint64, error) {
	return listenerInodes(addr)
}

// Holder returns a process holding the socket with the given inode,
// scanning every process's descriptors (milliseconds: for a check made
// once, not per connection). It returns an error wrapping [ErrNotFound]
// when no visible process holds it, and [ErrNotSupported] off Linux.
func Holder(inode uint64) (int, error) {
	return holder(inode)
}

// Holds reports whether process pid has a file descriptor open on the socket
// with the given inode. A process that does not exist, or whose descriptors
// may not be read, holds nothing. It first reads the one descriptor whose
// number held the socket of the previous call that found one (plugins of
// one program open their handshake connection at the same number), and
// lists all of pid's descriptors only if that is not the socket. It is
// safe for concurrent use.
func Holds(pid int, inode uint64) bool {
	return holdsHinted(pid, inode)
}

// HoldsAny reports whether process pid itself (not its descendants) has a
// file descriptor open on one of the sockets with the given inodes. It
// lists pid's descriptors once and reads nothing else of /proc, unlike
// [TreeSockets], which also lists pid's threads to find its children, and
// it leaves [Holds]'s hint alone. A process that does not exist, or whose
// descriptors may not be read, holds nothing. It is safe for concurrent
// use.
func HoldsAny(pid int, inodes []uint64) bool {
	return holdsAny(pid, inodes)
}

// TreeSockets returns the inodes of the sockets that root and its
// descendants hold, each with the pid of a process holding it. It is the
// cheap way to check many connections against one tree: one pass over the
// tree's descriptors, then a map lookup per connection (whose inode
// [SocketInode] gives), where [Lookup] scans every process of the system
// for a socket the tree does not hold. A socket the tree opens after the
// call is not in the answer; a connection accepted before the call began
// is, if the tree holds it.
//
// It returns the sockets it found and an error wrapping [ErrIncomplete]
// when a process of the tree exists but its descriptors could not be
// read (another user's, or /proc mounted with hidepid), [ErrNotFound]
// when root is gone, and [ErrNotSupported] off Linux. It is safe for
// concurrent use; it blocks while it reads /proc.
func TreeSockets(root int) (map[uint64]int, error) {
	return treeSockets(root)
}

// Descendants returns the pids of root's children, their children and so
// on, in breadth-first order, not including root itself. Processes that exit
// during the walk are left out.
func Descendants(root int) ([]int, error) {
	return descendants(root)
}

// InTree reports whether pid is root or one of its descendants, by
// following parent pids upwards. A process that exits during the walk ends
// it with false.
func InTree(pid, root int) (bool, error) {
	return inTree(pid, root)
}
