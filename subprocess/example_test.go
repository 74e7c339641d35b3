package subprocess_test

import (
	"context"
	"errors"
	"fmt"
	"os"
	"sync"
	"time"

	"github.com/rs/zerolog"
	"github.com/vmre/vmre"
	"github.com/vmre/vmre/subprocess"
)

// ExampleBootstrap launches a plugin, reports how its handshake went and
// stops it. It needs a plugin binary, so it is compiled but not run.
func ExampleBootstrap() {
	ctx := context.Background()
	log := zerolog.New(os.Stderr).With().Timestamp().Logger()
	manager := vmre.NewManager()
	defer manager.Stop(ctx)

	cmd := subprocess.NewCmd("./myvm", "--network", "local")
	p, err := subprocess.Bootstrap(ctx, cmd, &subprocess.Config{
		Name:             "myvm",
		Log:              log,
		AcceptedVersions: []uint32{vmre.ProtocolVersion},
		HandshakeTimeout: 5 * time.Second,
	})
	var exitErr *vmre.ExitError
	switch {
	case errors.As(err, &exitErr):
		fmt.Println("the plugin died:", exitErr.ExitStatus, exitErr.Tail)
		return
	case errors.Is(err, vmre.ErrProtocolVersionMismatch):
		fmt.Println("rebuild the plugin:", err)
		return
	case err != nil:
		fmt.Println(err) // e.g. "handshake failed: timeout"
		return
	}
	manager.TrackRuntime(p) // forgotten again when the process exits
	st := p.Status()
	fmt.Printf("pid %d serves its VM on %s (protocol %d, handshake in %s)\n",
		st.Pid, st.Addr, st.ProtocolVersion, st.HandshakeDuration)

	stopCtx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	p.Stop(stopCtx) // SIGTERM to its group, SIGKILL after the grace period
	fmt.Println(p.ExitStatus())
}

// ExampleConfig_onOutput keeps statistics of a plugin's output: the line is
// borrowed for the duration of the call, so what outlives it (here, the
// last panic's message) is copied. It needs
// a plugin binary, so it is compiled but not run.
func ExampleConfig_onOutput() {
	ctx := context.Background()
	var (
		mu            sync.Mutex
		bytesByStream = map[string]int{}
		lastPanic     []byte
	)
	p, err := subprocess.Bootstrap(ctx, subprocess.NewCmd("./myvm"), &subprocess.Config{
		AcceptedVersions: []uint32{vmre.ProtocolVersion},
		// Called from the stream's own goroutine, one line at a time per
		// stream; stdout and stderr may call it concurrently.
		OnOutput: func(l *subprocess.Line) {
			mu.Lock()
			defer mu.Unlock()
			bytesByStream[l.Stream] += len(l.Text)
			if l.Panic {
				lastPanic = append(lastPanic[:0], l.Message...) // a copy: l.Message is reused
			}
		},
	})
	if err != nil {
		fmt.Println(err)
		return
	}
	p.Stop(ctx)
	mu.Lock()
	defer mu.Unlock()
	fmt.Println(bytesByStream[subprocess.StreamStdout], bytesByStream[subprocess.StreamStderr], string(lastPanic))
}
