//go:build !linux

package fdwait

import "errors"

// Waiter does not exist here: Shared returns nil.
type Waiter struct{}

// Shared returns nil: only Linux has a waiter.
func Shared() *Waiter { return nil }

// Watch, Rearm and Unwatch are never called on a nil Waiter; they exist so
// that callers build everywhere.
func (*Waiter) Watch(int, func(bool)) error { return errors.ErrUnsupported }
func (*Waiter) Rearm(int) error             { return errors.ErrUnsupported }
func (*Waiter) Unwatch(int)                 {}
