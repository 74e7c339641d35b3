package main

import (
	"os"
	"os/signal"
	"syscall"
)

// surviveBrokenPipe makes a write to a stdout or stderr whose reader has
// gone (a pipeline's other end, ended by the same Ctrl-C; a log shipper
// that restarted) fail with EPIPE, which the log drops, instead of killing
// the process: Go's default for descriptors 1 and 2, which would leave the
// plugins to the kernel's parent-death signal instead of a graceful stop.
// It subscribes to SIGPIPE rather than ignoring it, because an ignored
// signal stays ignored across exec and every plugin would start with it.
// Call the returned function to end the subscription.
func surviveBrokenPipe() (stop func()) {
	c := make(chan os.Signal, 1) // never read: a full channel drops the signal
	signal.Notify(c, syscall.SIGPIPE)
	return func() { signal.Stop(c) }
}
