// Package procfd counts a process's open file descriptors from Linux's
// /proc, for the engine's own metrics and the usage samples of the
// processes it supervises. Elsewhere it has nothing.
package procfd
