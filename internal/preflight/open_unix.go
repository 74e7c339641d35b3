//go:build unix && !linux

package preflight

import (
	"os"
	"syscall"
)

func openFile(path string) (*os.File, error) {
	// O_NONBLOCK so that a named pipe does not block the open.
	return os.OpenFile(path, os.O_RDONLY|syscall.O_NONBLOCK, 0)
}
