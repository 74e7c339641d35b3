//go:build !linux

package preflight

import "io/fs"

func fileKey(fs.FileInfo) (formatKey, bool) { return formatKey{}, false }
