//go:build !unix

package connlimit

// nofile returns 0: the limit is not known here.
func nofile() int { return 0 }
