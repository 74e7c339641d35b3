//go:build !linux

package preflight

import (
	"os"
	"os/exec"
)

func openNoBlock(path string) (*os.File, error) {
	return openFile(path)
}

func checkAccess(*os.File) error { return nil }

// Prepare points cmd at the checked path. Outside Linux the file is
// executed by name: see the package documentation for what that leaves
// open. Call Prepare, then Start, then [Executable.Close].
func (e *Executable) Prepare(cmd *exec.Cmd) {
	cmd.Path = e.Path
}

func (e *Executable) removeLink() {}

// RemoveLinkDir does nothing: exec links are made on Linux only.
func RemoveLinkDir() {}
