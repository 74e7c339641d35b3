//go:build !linux

package subprocess

import "os/exec"

// startProcess starts cmd with cmd.Start, which also resolves what this
// system needs (on Windows: the executable's extension, the variables
// every program needs, keys compared without case).
func startProcess(cmd *exec.Cmd) error { return cmd.Start() }
