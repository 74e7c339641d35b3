//go:build !unix

package preflight

import "os"

func openFile(path string) (*os.File, error) { return os.Open(path) }
