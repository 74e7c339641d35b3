package subprocess

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"strconv"

	"github.com/vmre/vmre"
	"github.com/vmre/vmre/internal/peercred"
)

// errVMAddrUnchecked: whether the VM address is the plugin's could not be
// told (no peer lookups on this OS, or the plugin's tree is not readable).
var errVMAddrUnchecked = errors.New("cannot tell whether the vm address is the plugin's")

// CheckVMAddr reports whether the VM address the plugin announced in its
// handshake (Status().Addr) is a loopback TCP socket that the plugin or one
// of its descendants listens on: the address Stop calls /vm.VM/Shutdown on
// (Config.VMShutdown), and `vmre doctor` its health probe. A plugin can
// announce any address, another local service's included, and the engine
// must not call that on its behalf.
//
// It returns nil for the plugin's own socket, an error wrapping
// [vmre.ErrForeignVMAddr] that says why otherwise (nothing listens there,
// so connections are refused; another process listens there, named by
// pid; not a loopback address), and an error wrapping neither when it
// cannot tell: off Linux, or when a process of the plugin's tree cannot be
// inspected (another user's). It reads /proc (milliseconds on a busy
// host), so it is made at Stop, not at launch. Safe for concurrent use.
func (p *Process) CheckVMAddr() error {
	return checkVMAddr(p.status.Addr, p.pid)
}

func checkVMAddr(addr string, root int) error {
	hostPort, _ := vmre.CutTLSAddr(addr)
	host, portText, err := net.SplitHostPort(hostPort)
	if err != nil {
		return fmt.Errorf("%w: %q: %w", vmre.ErrForeignVMAddr, addr, err)
	}
	port, err := strconv.ParseUint(portText, 10, 16)
	if err != nil || port == 0 {
		return fmt.Errorf("%w: %q: bad port", vmre.ErrForeignVMAddr, addr)
	}
	var ips []netip.Addr
	if host == "localhost" {
		ips = []netip.Addr{netip.MustParseAddr("127.0.0.1"), netip.IPv6Loopback()}
	} else if ip, err := netip.ParseAddr(host); err == nil && ip.Unmap().IsLoopback() {
		ips = []netip.Addr{ip.Unmap()}
	} else {
		return fmt.Errorf("%w: %s: %w", vmre.ErrForeignVMAddr, addr, errNotLoopback)
	}
	var inodes []uint64
	for _, ip := range ips {
		found, err := peercred.ListenerInodes(netip.AddrPortFrom(ip, uint16(port)))
		switch {
		case errors.Is(err, peercred.ErrNotSupported):
			return fmt.Errorf("%w: %w", errVMAddrUnchecked, err)
		case err == nil:
			inodes = append(inodes, found...)
		case !errors.Is(err, peercred.ErrNotFound):
			return fmt.Errorf("%w: %w", errVMAddrUnchecked, err)
		}
	}
	if len(inodes) == 0 {
		return fmt.Errorf("%w: nothing listens on %s (connections to it are refused)", vmre.ErrForeignVMAddr, addr)
	}
	// The plugin itself nearly always listens. Looking at its own
	// descriptors first spares the walk of its tree, which lists its
	// threads in /proc: the kernel invalidates every /proc entry a reader
	// made of the process when its parent reaps it, and with its threads'
	// entries that took milliseconds of the reaper's system time.
	if peercred.HoldsAny(root, inodes) {
		return nil
	}
	tree, treeErr := peercred.TreeSockets(root)
	for _, inode := range inodes {
		if tree[inode] != 0 {
			return nil
		}
	}
	if treeErr != nil && !errors.Is(treeErr, peercred.ErrNotFound) {
		return fmt.Errorf("%w: %w", errVMAddrUnchecked, treeErr)
	}
	if pid, err := peercred.Holder(inodes[0]); err == nil {
		return fmt.Errorf("%w: %s is listened on by pid %d, not by the plugin (pid %d) or its descendants", vmre.ErrForeignVMAddr, addr, pid, root)
	}
	return fmt.Errorf("%w: %s is listened on by a process outside the plugin's tree (pid %d)", vmre.ErrForeignVMAddr, addr, root)
}
