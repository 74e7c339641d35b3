//go:build !linux

package peercred

import "net/netip"

func lookup(netip.AddrPort, netip.AddrPort, int) (Owner, error) { return Owner{}, ErrNotSupported }

func socketInode(netip.AddrPort, netip.AddrPort) (uint64, error) { return 0, ErrNotSupported }

func holdsHinted(int, uint64) bool { return false }

func holdsAny(int, []uint64) bool { return false }

func holder(uint64) (int, error) { return 0, ErrNotSupported }

func listenerInodes(netip.AddrPort) ([]uint64, error) { return nil, ErrNotSupported }

func treeSockets(int) (map[uint64]int, error) { return nil, ErrNotSupported }

func descendants(int) ([]int, error) { return nil, ErrNotSupported }

func inTree(int, int) (bool, error) { return false, ErrNotSupported }

// Supported reports whether this OS can look up socket owners.
const Supported = false
