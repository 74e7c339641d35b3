//go:build linux

package subprocess_test

import (
	"fmt"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"testing"

	"github.com/vmre/vmre/subprocess"
	"golang.org/x/sys/unix"
)

// childStdioFlags reports, after its handshake, what its standard streams
// are: a pipe or not, and whether non-blocking, before anything it does
// could change them; then it waits for SIGTERM.
func childStdioFlags() int {
	signals := make(chan os.Signal, 1)
	signal.Notify(signals, syscall.SIGTERM)
	var desc [3]string
	for fd := range 3 {
		var st unix.Stat_t
		flags, err := unix.FcntlInt(uintptr(fd), unix.F_GETFL, 0)
		if err == nil {
			err = unix.Fstat(fd, &st)
		}
		if err != nil {
			desc[fd] = err.Error()
			continue
		}
		desc[fd] = fmt.Sprintf("pipe=%t nonblock=%t", st.Mode&unix.S_IFMT == unix.S_IFIFO, flags&unix.O_NONBLOCK != 0)
	}
	if _, err := handshake(childVersion()); err != nil {
		return 1
	}
	fmt.Printf("stdin %s\n", desc[0])
	fmt.Printf("stdout %s\n", desc[1])
	fmt.Printf("stderr %s\n", desc[2])
	<-signals
	return 0
}

// The plugin's output goes to pipes it writes as programs expect to:
// blocking, so that a write to a full pipe waits instead of failing with
// EAGAIN; the engine reads its ends without blocking a thread. Its stdin is
// /dev/null, blocking too.
func TestPluginStdioBlocking(t *testing.T) {
	t.Parallel()
	out := newCollector()
	_, p := mustBootstrap(t, "stdio-flags", &subprocess.Config{OnOutput: out.add})
	for _, want := range []struct{ stream, desc string }{
		{"stdin", "pipe=false nonblock=false"},
		{"stdout", "pipe=true nonblock=false"},
		{"stderr", "pipe=true nonblock=false"},
	} {
		l := out.waitFor(t, func(l outLine) bool { return strings.HasPrefix(l.Text, want.stream+" ") })
		if got := strings.TrimPrefix(l.Text, want.stream+" "); got != want.desc {
			t.Errorf("the plugin's %s: %s, want %s", want.stream, got, want.desc)
		}
	}
	p.Stop(t.Context())
}
