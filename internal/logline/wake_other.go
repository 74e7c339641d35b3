//go:build !linux

package logline

// wakeState is empty here: no waiter starts the reads (see Start).
type wakeState struct{}

func (r *Reader) startWoken(func()) bool { return false }

func (r *Reader) stopWoken() {}
