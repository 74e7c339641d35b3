//go:build !linux

package main

// runAsInit does nothing outside Linux, where vmre is never its PID
// namespace's init.
func runAsInit() (code int, ok bool) { return 0, false }
