//go:build unix && !linux

package logline

// pipeSize keeps a pipe's capacity: only Linux can change it.
type pipeSize struct{}

func (*pipeSize) init()                        {}
func (*pipeSize) afterRead(int, int, int) bool { return false }
func (*pipeSize) shrink(int) bool              { return false }
