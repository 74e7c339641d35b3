//go:build !linux

package floor

import "os"

// GrowPipe does nothing: pipes grow on Linux only.
func GrowPipe(*os.File) {}

// Pipe is os.Pipe.
func Pipe() (r, w *os.File, err error) { return os.Pipe() }
