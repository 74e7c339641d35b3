package connlimit_test

import (
	"bufio"
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"os"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/rs/zerolog"
	"github.com/vmre/vmre/internal/connlimit"
)

// serve serves h on 127.0.0.1 through a Listener holding at most max
// connections.
func serve(t *testing.T, maxConns int, h http.Handler) (string, *connlimit.Listener) {
	t.Helper()
	return serveSeen(t, maxConns, h, nil)
}

// serveSeen is serve, and also sends every connection state the server
// reports to seen, if it is not nil (never blocking: it must be buffered
// enough).
func serveSeen(t *testing.T, maxConns int, h http.Handler, seen chan<- http.ConnState) (string, *connlimit.Listener) {
	t.Helper()
	raw, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	l := connlimit.New(raw, maxConns, zerolog.New(zerolog.NewTestWriter(t)))
	connState := l.ConnState
	if seen != nil {
		connState = func(c net.Conn, state http.ConnState) {
			l.ConnState(c, state)
			select {
			case seen <- state:
			default:
			}
		}
	}
	srv := &http.Server{Handler: h, ReadHeaderTimeout: time.Minute, ConnState: connState}
	done := make(chan struct{})
	go func() {
		defer close(done)
		_ = srv.Serve(l)
	}()
	t.Cleanup(func() {
		_ = srv.Close()
		<-done
	})
	return raw.Addr().String(), l
}

// get sends a GET on c and reads the answer's status line; it returns
// io.EOF if the server closed c.
func get(c net.Conn, path string) (string, error) {
	if _, err := io.WriteString(c, "GET "+path+" HTTP/1.1\r\nHost: x\r\n\r\n"); err != nil {
		return "", err
	}
	resp, err := http.ReadResponse(bufio.NewReader(c), nil)
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	_, err = io.Copy(io.Discard, resp.Body)
	return resp.Status, err
}

func dial(t *testing.T, addr string) net.Conn {
	t.Helper()
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = c.Close() })
	return c
}

// waitClosed reads c until the server closes it.
func waitClosed(t *testing.T, c net.Conn) {
	t.Helper()
	_ = c.SetReadDeadline(time.Now().Add(time.Minute)) // a bound for a hung test
	if _, err := c.Read(make([]byte, 1)); !errors.Is(err, io.EOF) {
		t.Fatalf("read from a connection that should be closed: %v", err)
	}
}

// TestEvictsLongestIdle: at the cap a new connection is served and the one
// idle the longest is closed; busy connections are never closed.
func TestEvictsLongestIdle(t *testing.T) {
	t.Parallel()
	release := make(chan struct{})
	entered := make(chan struct{}, 1)
	seen := make(chan http.ConnState, 64)
	addr, l := serveSeen(t, 3, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/block" {
			entered <- struct{}{}
			<-release
		}
	}), seen)
	older, newer, busy := dial(t, addr), dial(t, addr), dial(t, addr)
	for _, c := range []net.Conn{older, newer} {
		if _, err := get(c, "/"); err != nil {
			t.Fatal(err)
		}
		// The answer can reach the client before the server reports the
		// connection idle: wait for that, so that older is idle first
		// (a CI run under -race saw newer reported idle before older).
		for state := range seen {
			if state == http.StateIdle {
				break
			}
		}
	}
	go func() { _, _ = get(busy, "/block") }()
	<-entered
	// older was idle first, then newer; busy has a request open.
	if _, err := get(dial(t, addr), "/"); err != nil {
		t.Fatalf("a new connection at the cap: %v", err)
	}
	waitClosed(t, older)
	if _, err := get(newer, "/"); err != nil {
		t.Fatalf("the connection idle the shorter time: %v", err)
	}
	close(release)
	if open, evicted, _ := l.Stats(); open > 3 || evicted != 1 {
		t.Fatalf("open %d, evicted %d; want at most 3 and 1", open, evicted)
	}
}

// TestRefusesWhenAllBusy: at the cap with every connection busy, a new
// connection is closed and the busy ones are untouched.
func TestRefusesWhenAllBusy(t *testing.T) {
	t.Parallel()
	release := make(chan struct{})
	entered := make(chan struct{}, 1)
	addr, l := serve(t, 1, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		entered <- struct{}{}
		<-release
	}))
	busy := dial(t, addr)
	answered := make(chan error, 1)
	go func() {
		_, err := get(busy, "/")
		answered <- err
	}()
	<-entered
	waitClosed(t, dial(t, addr))
	close(release)
	if err := <-answered; err != nil {
		t.Fatalf("the busy connection: %v", err)
	}
	if _, _, refused := l.Stats(); refused != 1 {
		t.Fatalf("refused %d, want 1", refused)
	}
}

// TestCloseUnblocksAccept: closing the listener ends Serve.
func TestCloseUnblocksAccept(t *testing.T) {
	t.Parallel()
	raw, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	l := connlimit.New(raw, 1, zerolog.Nop())
	ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
	defer cancel()
	accepted := make(chan error, 1)
	go func() {
		_, err := l.Accept()
		accepted <- err
	}()
	_ = l.Close()
	select {
	case err := <-accepted:
		if !errors.Is(err, net.ErrClosed) {
			t.Fatalf("Accept after Close: %v", err)
		}
	case <-ctx.Done():
		t.Fatal("Accept did not return after Close")
	}
}

// emfileListener fails its next Accepts with EMFILE, as a process out of
// descriptors sees, after fail is set.
type emfileListener struct {
	net.Listener
	fail, failed atomic.Int32
}

func (l *emfileListener) Accept() (net.Conn, error) {
	if l.fail.Add(-1) >= 0 {
		l.failed.Add(1)
		return nil, &net.OpError{Op: "accept", Net: "tcp", Err: os.NewSyscallError("accept4", syscall.EMFILE)}
	}
	return l.Listener.Accept()
}

// TestOutOfDescriptors: when accept fails with EMFILE the listener frees a
// descriptor by closing the longest idle connection, and retries after a
// growing pause (5, 10, 20 ms...) rather than at once, without returning
// the error; the pending connection is then served.
func TestOutOfDescriptors(t *testing.T) {
	t.Parallel()
	raw, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	inner := &emfileListener{Listener: raw}
	l := connlimit.New(inner, 10, zerolog.New(zerolog.NewTestWriter(t)))
	t.Cleanup(func() { _ = l.Close() })
	idle := dial(t, raw.Addr().String())
	first, err := l.Accept()
	if err != nil {
		t.Fatal(err)
	}
	defer first.Close()

	const fails = 3
	inner.fail.Store(fails)
	dial(t, raw.Addr().String())
	start := time.Now()
	second, err := l.Accept()
	if err != nil {
		t.Fatalf("Accept returned %v; want it to wait out EMFILE", err)
	}
	defer second.Close()
	// A lower bound only: the pauses must have happened.
	if took, least := time.Since(start), (5+10+20)*time.Millisecond; took < least {
		t.Errorf("Accept retried %d EMFILEs in %v, want pauses of at least %v in all", fails, took, least)
	}
	if n := inner.failed.Load(); n != fails {
		t.Errorf("inner Accept failed %d times, want %d", n, fails)
	}
	waitClosed(t, idle) // its server side was closed to free a descriptor
	if _, evicted, _ := l.Stats(); evicted != 1 {
		t.Errorf("evicted %d, want 1 (the only idle connection)", evicted)
	}
}

// TestEvictBusy: at the cap with every connection busy, the connection
// EvictBusy's function names is closed to make room if its client has
// waited at least the minimum; otherwise the new connection is closed.
// The other busy connection is never touched.
func TestEvictBusy(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name        string
		waited      time.Duration // how long ago the named call began waiting
		minWait     time.Duration
		named       bool // whether the function names a connection
		wantEvicted bool
	}{
		{name: "waited long enough", waited: time.Hour, minWait: time.Second, named: true, wantEvicted: true},
		{name: "waited too briefly", waited: 0, minWait: time.Hour, named: true},
		{name: "nobody waiting", minWait: time.Second},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			release := make(chan struct{})
			entered := make(chan struct{}, 2)
			addr, l := serve(t, 2, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				if r.URL.Path == "/block" {
					entered <- struct{}{}
					<-release
				}
			}))
			stalled, busy := dial(t, addr), dial(t, addr)
			answered := map[net.Conn]chan error{stalled: make(chan error, 1), busy: make(chan error, 1)}
			for c, ch := range answered {
				go func() {
					_, err := get(c, "/block")
					ch <- err
				}()
				<-entered
			}
			since := time.Now().Add(-tt.waited)
			l.EvictBusy(func() (string, time.Time, bool) {
				return stalled.LocalAddr().String(), since, tt.named
			}, tt.minWait)

			newcomer := dial(t, addr)
			if tt.wantEvicted {
				if _, err := get(newcomer, "/"); err != nil {
					t.Fatalf("a new connection with every one busy: %v", err)
				}
				waitClosed(t, stalled)
			} else {
				waitClosed(t, newcomer)
			}
			close(release)
			if err := <-answered[busy]; err != nil {
				t.Errorf("the busy connection not named: %v", err)
			}
			if err := <-answered[stalled]; (err != nil) != tt.wantEvicted {
				t.Errorf("the named connection's request: %v (evicted: %v)", err, tt.wantEvicted)
			}
			if _, evicted, refused := l.Stats(); tt.wantEvicted != (evicted == 1 && refused == 0) {
				t.Fatalf("evicted %d, refused %d", evicted, refused)
			}
		})
	}
}
