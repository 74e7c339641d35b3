//go:build !linux

package engine

// setNonDumpable does nothing: only Linux has PR_SET_DUMPABLE. macOS
// processes of the same user may be inspected unless hardened at build
// time, which a library cannot do.
func setNonDumpable() error { return nil }
