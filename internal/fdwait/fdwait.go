// Package fdwait runs a function when a file descriptor becomes readable.
// On Linux one goroutine for the whole process waits for all watched
// descriptors at once, on an epoll instance in the runtime's poller, so a
// descriptor that stays quiet costs no goroutine and no stack while it
// waits: the exit of a plugin (its pidfd) and its output pipes. Elsewhere
// there is no waiter ([Shared] returns nil) and callers wait on their own.
package fdwait

// Func is the function name of the goroutine that waits while any
// descriptor is watched. It ends when none is left; a leak checker that
// runs while descriptors may still be watched ignores it.
const Func = "github.com/vmre/vmre/internal/fdwait.run"
