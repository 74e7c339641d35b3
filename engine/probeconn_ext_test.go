package engine_test

import (
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"os/signal"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/rs/zerolog"
	"github.com/vmre/vmre"
	"github.com/vmre/vmre/client"
	"github.com/vmre/vmre/engine"
	"github.com/vmre/vmre/subprocess"
	"google.golang.org/grpc"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
)

// connTracker counts the open connections of a listener: a connection is
// closed once either side has closed it (a read sees the peer's end, or
// the server closes it).
type connTracker struct {
	mu      sync.Mutex
	open    int
	changed chan struct{}
}

type trackedListener struct {
	net.Listener
	t *connTracker
}

type trackedConn struct {
	net.Conn
	t    *connTracker
	once sync.Once
}

func (l trackedListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	l.t.mu.Lock()
	l.t.open++
	l.t.mu.Unlock()
	return &trackedConn{Conn: c, t: l.t}, nil
}

func (c *trackedConn) ended() {
	c.once.Do(func() {
		c.t.mu.Lock()
		c.t.open--
		c.t.mu.Unlock()
		select {
		case c.t.changed <- struct{}{}:
		default:
		}
	})
}

func (c *trackedConn) Read(b []byte) (int, error) {
	n, err := c.Conn.Read(b)
	if err != nil {
		c.ended()
	}
	return n, err
}

func (c *trackedConn) Close() error {
	c.ended()
	return c.Conn.Close()
}

// waitClosed waits until no connection is open, or d has passed.
func (t *connTracker) waitClosed(d time.Duration) bool {
	deadline := time.After(d)
	for {
		t.mu.Lock()
		open := t.open
		t.mu.Unlock()
		if open == 0 {
			return true
		}
		select {
		case <-t.changed:
		case <-deadline:
			return false
		}
	}
}

// grpcHealthChild is a plugin whose VM server is grpc-go serving
// grpc.health.v1 SERVING. On SIGTERM it exits 0 once no client holds a
// connection to its VM server, and 3 if one still does after 20 s: a
// client that holds its connection through the stop sequence delays a
// grpc-go server's GracefulStop.
func grpcHealthChild() int {
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	tracker := &connTracker{changed: make(chan struct{}, 1)}
	srv := grpc.NewServer()
	healthpb.RegisterHealthServer(srv, health.NewServer())
	go func() { _ = srv.Serve(trackedListener{lis, tracker}) }()
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM)
	defer stop()
	if err := client.Handshake(ctx, vmre.ProtocolVersion, lis.Addr().String()); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	<-ctx.Done()
	if !tracker.waitClosed(20 * time.Second) {
		fmt.Fprintln(os.Stderr, "a client still holds a connection to the vm server at SIGTERM")
		return 3
	}
	srv.Stop()
	return 0
}

// TestProbeConnectionClosedBeforeStop: the engine closes its liveness
// probe's connection to a VM before it sends the stop signal, on a Stop
// and when the engine closes, so a VM's graceful stop does not wait for a
// client that is only the engine's probe.
func TestProbeConnectionClosedBeforeStop(t *testing.T) {
	t.Parallel()
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	for _, how := range []string{"stop", "close"} {
		t.Run(how, func(t *testing.T) {
			t.Parallel()
			clock := newFakeClock()
			launcher := engine.NewSubprocessLauncher(subprocess.Config{
				Log: zerolog.New(zerolog.NewTestWriter(t)), HandshakeTimeout: time.Minute, GracefulTimeout: time.Minute,
			}, func(spec engine.Spec) (*exec.Cmd, error) {
				cmd := subprocess.NewCmd(spec.Path, spec.Args...)
				cmd.Env = append(os.Environ(), childEnv+"=grpc-health")
				return cmd, nil
			})
			e := newEngine(t, launcher, func(c *engine.Config) { c.Clock = clock; c.SampleInterval = -1 })
			check := engine.HealthCheck{Interval: time.Second, Timeout: time.Minute}
			rt, err := e.Launch(t.Context(), engine.Spec{Name: "grpc", Path: self, Health: check})
			if err != nil {
				t.Fatal(err)
			}
			w := watchFromSnapshot(t, e)
			clock.advance(check.Interval)
			expectHealth(t, w, rt.ID, engine.StateRunning, engine.HealthServing)

			ctx, cancel := context.WithTimeout(t.Context(), 2*time.Minute)
			defer cancel()
			if how == "stop" {
				rt, err = e.Stop(ctx, rt.ID)
				if err != nil {
					t.Fatal(err)
				}
			} else {
				e.Close(ctx)
				rt, _, _ = e.Get(rt.ID)
			}
			if rt.Exit == nil || !rt.Exit.Success() {
				t.Fatalf("stopped %v with exit %+v (%s), want status 0: the probe's connection was still open at SIGTERM", rt.State, rt.Exit, rt.LastError)
			}
		})
	}
}
