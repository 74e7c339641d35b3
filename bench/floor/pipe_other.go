//go:build !linux

package floor

import "os"

// GrowPipe does nothing: pipes grow on Linux only.
func GrowPipe(*os.File) {}
