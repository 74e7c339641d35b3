package handshakeauth

import (
	"errors"
	"sync"

	"github.com/vmre/vmre/internal/peercred"
)

// treeView answers "does the launched tree hold this socket?" for many
// connections from few reads of /proc: it keeps the latest
// [peercred.TreeSockets] snapshot, and a check that misses it waits for a
// snapshot begun after the check itself, shared by every check waiting at
// that moment. Such a snapshot holds every socket the tree held when the
// connection was already accepted, so a miss is final: a connection from
// outside the tree costs one socket query in the kernel and a share of one
// pass over the tree's descriptors, never a scan of every process. A flood
// of N foreign connections costs N queries and a handful of snapshots.
type treeView struct {
	root int

	mu      sync.Mutex
	snap    map[uint64]int // the latest finished snapshot
	snapErr error          // its error (peercred.ErrIncomplete, ErrNotFound)
	snapSeq uint64         // when it began, as a ticket number
	tickets uint64         // ticket numbers handed out: a total order of checks and snapshots
	running chan struct{}  // closed when the snapshot in progress ends; nil if none
}

// errTreeUnreadable: the snapshot could not see every process of the tree.
var errTreeUnreadable = errors.New("launched process tree only partly readable")

// holder returns the pid of the tree's process holding inode, or 0 if the
// tree does not hold it. It returns an error when the tree could not be
// read whole and inode was not among what was read: then only a full
// lookup can tell.
func (v *treeView) holder(inode uint64) (int, error) {
	v.mu.Lock()
	// A hit in any snapshot is final: socket inode numbers are not reused
	// while the socket lives, and the connection's does.
	if pid := v.snap[inode]; pid != 0 {
		v.mu.Unlock()
		return pid, nil
	}
	untouched := v.tickets == 0
	v.mu.Unlock()
	// The first check of a launch is nearly always the plugin's own call
	// from the launched process: one look at its newest descriptors (see
	// peercred.Holds) admits it without reading the whole tree, which is
	// what a launch pays when no one else calls.
	if untouched && peercred.Holds(v.root, inode) {
		return v.root, nil
	}
	v.mu.Lock()
	defer v.mu.Unlock()
	v.tickets++
	ticket := v.tickets
	for {
		if v.snapSeq > ticket {
			if pid := v.snap[inode]; pid != 0 {
				return pid, nil
			}
			if v.snapErr != nil && errors.Is(v.snapErr, peercred.ErrIncomplete) {
				return 0, errTreeUnreadable
			}
			return 0, nil
		}
		if v.running != nil {
			done := v.running
			v.mu.Unlock()
			<-done
			v.mu.Lock()
			continue
		}
		v.tickets++
		start := v.tickets
		done := make(chan struct{})
		v.running = done
		v.mu.Unlock()
		snap, err := peercred.TreeSockets(v.root)
		v.mu.Lock()
		v.snap, v.snapErr, v.snapSeq = snap, err, start
		v.running = nil
		close(done)
	}
}
