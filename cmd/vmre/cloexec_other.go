//go:build !linux

package main

// markInheritedCloexec does nothing outside Linux: plugins there inherit
// whatever vmre inherited without close-on-exec.
func markInheritedCloexec() error { return nil }
