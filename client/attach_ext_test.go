package client_test

import (
	"context"
	"errors"
	"net"
	"net/http"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/vmre/vmre"
	"github.com/vmre/vmre/client"
	"github.com/vmre/vmre/server"
)

// attachLog records the name and instance headers of each handshake.
type attachLog struct {
	mu        sync.Mutex
	instances []string
	names     []string
	seen      chan struct{}
}

func (l *attachLog) wrap(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		l.mu.Lock()
		l.instances = append(l.instances, r.Header.Get(vmre.AttachInstanceHeader))
		l.names = append(l.names, r.Header.Get(vmre.RuntimeNameHeader))
		l.mu.Unlock()
		next.ServeHTTP(w, r)
		select {
		case l.seen <- struct{}{}:
		default:
		}
	})
}

// TestAttacherRetriesAndReregisters: an Attacher retries (with backoff)
// while no engine listens, is accepted once one does, and registers again
// with an engine that replaced the first (an engine restart), carrying
// its name and one instance throughout; it returns ctx's error when ctx
// ends.
func TestAttacherRetriesAndReregisters(t *testing.T) {
	t.Parallel()
	path := filepath.Join(t.TempDir(), "attach.sock")
	outcomes := make(chan error, 1024)
	a := &client.Attacher{
		ProtocolVersion: engineVersion,
		VMAddr:          "127.0.0.1:5200",
		EngineAddr:      "unix:" + path,
		Options:         []client.Option{client.WithName("subnet-a")},
		Refresh:         20 * time.Millisecond,
		MinBackoff:      time.Millisecond,
		MaxBackoff:      20 * time.Millisecond,
		OnHandshake:     func(err error) { outcomes <- err },
	}
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan error, 1)
	go func() { done <- a.Run(ctx) }()
	for range 3 {
		if err := <-outcomes; !errors.Is(err, vmre.ErrProcessNotFound) {
			t.Fatalf("with no engine: %v, want ErrProcessNotFound", err)
		}
	}

	engines := []*versionEngine{{}, {}}
	logs := []*attachLog{{seen: make(chan struct{}, 1)}, {seen: make(chan struct{}, 1)}}
	for i := range engines {
		lis, err := net.Listen("unix", path)
		if err != nil {
			t.Fatal(err)
		}
		srvCtx, stop := context.WithCancel(t.Context())
		served := make(chan struct{})
		go func() {
			defer close(served)
			serveUntil(srvCtx, lis, engines[i], logs[i].wrap)
		}()
		<-logs[i].seen // accepted by this engine, which then goes away
		stop()
		<-served
	}
	cancel()
	if err := <-done; !errors.Is(err, context.Canceled) {
		t.Fatalf("Run returned %v, want context.Canceled", err)
	}
	instance := ""
	for i, l := range logs {
		l.mu.Lock()
		for j := range l.instances {
			if l.names[j] != "subnet-a" || l.instances[j] == "" || (instance != "" && l.instances[j] != instance) {
				t.Errorf("engine %d, handshake %d: name %q instance %q; want subnet-a and one instance", i, j, l.names[j], l.instances[j])
			}
			instance = l.instances[j]
		}
		l.mu.Unlock()
		if got := engines[i].acceptedAddrs(); len(got) == 0 || got[0] != "127.0.0.1:5200" {
			t.Errorf("engine %d accepted %v", i, got)
		}
	}
}

// serveUntil serves vmre's handshake handler for init on lis until ctx
// ends, then closes the server (removing the socket file).
func serveUntil(ctx context.Context, lis net.Listener, init vmre.Initializer, wrap func(http.Handler) http.Handler) {
	mux := http.NewServeMux()
	mux.Handle(server.NewHandler(init))
	srv := server.NewHTTPServer(wrap(mux))
	go func() { _ = srv.Serve(lis) }()
	<-ctx.Done()
	_ = srv.Close()
}

// TestAttacherStopsOnPermanentErrors: a version the engine refuses is not
// retried, nor a missing engine address. Not parallel: it sets the
// environment.
func TestAttacherStopsOnPermanentErrors(t *testing.T) {
	engine := startVMREServer(t, &versionEngine{}, nil)
	a := &client.Attacher{ProtocolVersion: engineVersion + 1, VMAddr: "127.0.0.1:5300", EngineAddr: engine, MinBackoff: time.Millisecond}
	if err := a.Run(t.Context()); !errors.Is(err, vmre.ErrProtocolVersionMismatch) {
		t.Fatalf("Run: %v, want ErrProtocolVersionMismatch", err)
	}
	a = &client.Attacher{ProtocolVersion: engineVersion, VMAddr: "127.0.0.1:5300"}
	t.Run("no engine address", func(t *testing.T) {
		for _, key := range vmre.EngineAddressKeys() {
			t.Setenv(key, "")
		}
		if err := a.Run(t.Context()); !errors.Is(err, vmre.ErrEngineAddressNotSet) {
			t.Fatalf("Run: %v, want ErrEngineAddressNotSet", err)
		}
	})
}
