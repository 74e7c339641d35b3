package server

import "sync/atomic"

// RefusalReason says why a handshake caller was refused before its call
// reached the [vmre.Initializer]. The set is closed, so that a metric
// labelled with it stays bounded.
type RefusalReason uint8

// Reasons for refusing a handshake caller.
const (
	// RefusedNoToken: the call carried no handshake token.
	RefusedNoToken RefusalReason = iota
	// RefusedBadToken: the call carried a wrong token, or several.
	RefusedBadToken
	// RefusedForeignPeer: the caller's socket belongs to a process outside
	// the launched plugin's tree.
	RefusedForeignPeer
	// RefusedUnverified: the caller could not be checked (no launched
	// process yet, its socket not found, the check cut short).
	RefusedUnverified
	numRefusalReasons
)

var refusalNames = [numRefusalReasons]string{
	RefusedNoToken:     "no_token",
	RefusedBadToken:    "bad_token",
	RefusedForeignPeer: "foreign_peer",
	RefusedUnverified:  "unverified",
}

// String returns the reason as a metric label value ("no_token").
func (r RefusalReason) String() string {
	if r < numRefusalReasons {
		return refusalNames[r]
	}
	return "unknown"
}

// RefusalReasons returns every reason, in a fixed order.
func RefusalReasons() []RefusalReason {
	out := make([]RefusalReason, numRefusalReasons)
	for i := range out {
		out[i] = RefusalReason(i)
	}
	return out
}

// Refusals counts refused handshake callers by reason. Every place that
// refuses a caller (an [Authorizer], a listener that refuses connections)
// counts through one, and vmre_handshake_refused_total reads it. The zero
// value is ready to use; a nil *Refusals counts nothing. Safe for
// concurrent use; Add is one atomic increment.
type Refusals struct {
	n [numRefusalReasons]atomic.Uint64
}

// Add counts one refusal. An unknown reason is ignored.
func (r *Refusals) Add(reason RefusalReason) {
	if r == nil || reason >= numRefusalReasons {
		return
	}
	r.n[reason].Add(1)
}

// Count returns how many refusals for reason have been counted.
func (r *Refusals) Count(reason RefusalReason) uint64 {
	if r == nil || reason >= numRefusalReasons {
		return 0
	}
	return r.n[reason].Load()
}
