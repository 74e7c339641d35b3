//go:build !linux

package logline

import "os"

// NewPipe returns the pipe of one of a plugin's output streams: the read
// end for [Bridge.Reader], the write end for the plugin.
func NewPipe() (r, w *os.File, err error) { return os.Pipe() }
