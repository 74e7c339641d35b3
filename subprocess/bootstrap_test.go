//go:build linux

package subprocess

import (
	"context"
	"errors"
	"io"
	"net"
	"testing"
	"time"

	"github.com/vmre/vmre"
	"github.com/vmre/vmre/client"
	"golang.org/x/net/http2"
	"golang.org/x/sys/unix"
)

// serveTestHandshake serves hs the way launch does, on a listener of its
// own, and returns its address.
func serveTestHandshake(t *testing.T, hs *handshake) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); serveHandshake(ctx, hs, ln, nil, time.Minute) }()
	t.Cleanup(func() { _ = ln.Close(); cancel(); <-done })
	return ln.Addr().String()
}

// TestSecondInitializeGetsAlreadyInitialized drives the handshake server
// over the wire with the real client: the first call decides, the second
// is refused with already_exists, which the client maps back to
// ErrAlreadyInitialized.
func TestSecondInitializeGetsAlreadyInitialized(t *testing.T) {
	t.Parallel()
	hs := newHandshake([]uint32{vmre.ProtocolVersion}, nil)
	c := client.New(serveTestHandshake(t, hs))
	defer c.Close()

	if err := c.Initialize(t.Context(), vmre.ProtocolVersion, "127.0.0.1:9000"); err != nil {
		t.Fatalf("first Initialize: %v", err)
	}
	if res := <-hs.result; res.err != nil || res.addr != "127.0.0.1:9000" || res.version != vmre.ProtocolVersion {
		t.Errorf("result = %+v", res)
	}
	for _, v := range []uint32{vmre.ProtocolVersion, 41} {
		err := c.Initialize(t.Context(), v, "127.0.0.1:9001")
		if !errors.Is(err, vmre.ErrAlreadyInitialized) {
			t.Errorf("Initialize(%d) after the handshake: %v, want ErrAlreadyInitialized", v, err)
		}
	}
	select {
	case res := <-hs.result:
		t.Errorf("a second result was produced: %+v", res)
	default:
	}
}

// TestInvalidInitializeDoesNotDecide: a call the server rejects as
// malformed never reaches the handshake, so the plugin can still complete
// it.
func TestInvalidInitializeDoesNotDecide(t *testing.T) {
	t.Parallel()
	hs := newHandshake([]uint32{vmre.ProtocolVersion}, nil)
	c := client.New(serveTestHandshake(t, hs))
	defer c.Close()
	if err := c.Initialize(t.Context(), vmre.ProtocolVersion, "not an address"); !errors.Is(err, vmre.ErrInvalidRequest) {
		t.Fatalf("malformed Initialize: %v, want ErrInvalidRequest", err)
	}
	if err := c.Initialize(t.Context(), vmre.ProtocolVersion, "127.0.0.1:9000"); err != nil {
		t.Fatalf("valid Initialize after a malformed one: %v", err)
	}
}

func TestMismatchAnswersFailedPrecondition(t *testing.T) {
	t.Parallel()
	hs := newHandshake([]uint32{42, 43}, nil)
	c := client.New(serveTestHandshake(t, hs))
	defer c.Close()
	err := c.Initialize(t.Context(), 41, "127.0.0.1:9000")
	if !errors.Is(err, vmre.ErrProtocolVersionMismatch) {
		t.Fatalf("Initialize(41): %v, want ErrProtocolVersionMismatch", err)
	}
	res := <-hs.result
	var mismatch *vmre.VersionMismatchError
	if !errors.As(res.err, &mismatch) || mismatch.Got != 41 || res.err.Error() != "protocol version mismatch engine: 42,43 vm: 41" {
		t.Errorf("result error = %v", res.err)
	}
}

// TestHandshakeListenerNoKeepAlive: the handshake's connections get no TCP
// keep-alive, which net.Listen would set up on every accepted connection.
func TestHandshakeListenerNoKeepAlive(t *testing.T) {
	t.Parallel()
	ln, err := listenHandshake()
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	if ip := ln.Addr().(*net.TCPAddr).IP; !ip.IsLoopback() {
		t.Errorf("handshake listener on %s, want loopback", ip)
	}
	client, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer client.Close()
	conn, err := ln.Accept()
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	rc, err := conn.(*net.TCPConn).SyscallConn()
	if err != nil {
		t.Fatal(err)
	}
	var keepAlive int
	var optErr error
	if err := rc.Control(func(fd uintptr) {
		keepAlive, optErr = unix.GetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_KEEPALIVE)
	}); err != nil || optErr != nil {
		t.Fatal(err, optErr)
	}
	if keepAlive != 0 {
		t.Error("SO_KEEPALIVE is set on an accepted handshake connection")
	}
}

// TestHandshakeServerConnWindow: a handshake server's HTTP/2 connection
// opens with its SETTINGS alone, no connection-level WINDOW_UPDATE (which
// net/http sends to raise the window to 1 MiB), before it acknowledges the
// client's SETTINGS; and a call still completes the handshake.
func TestHandshakeServerConnWindow(t *testing.T) {
	t.Parallel()
	hs := newHandshake([]uint32{vmre.ProtocolVersion}, nil)
	addr := serveTestHandshake(t, hs)
	conn, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	if err := conn.SetDeadline(time.Now().Add(30 * time.Second)); err != nil {
		t.Fatal(err)
	}
	if _, err := io.WriteString(conn, http2.ClientPreface); err != nil {
		t.Fatal(err)
	}
	fr := http2.NewFramer(conn, conn)
	if err := fr.WriteSettings(); err != nil {
		t.Fatal(err)
	}
	for acked := false; !acked; {
		f, err := fr.ReadFrame()
		if err != nil {
			t.Fatal(err)
		}
		switch f := f.(type) {
		case *http2.SettingsFrame:
			acked = f.IsAck()
		case *http2.WindowUpdateFrame:
			if f.StreamID == 0 {
				t.Errorf("connection-level WINDOW_UPDATE of %d before the SETTINGS ACK", f.Increment)
			}
		}
	}
	conn.Close()

	c := client.New(addr)
	defer c.Close()
	if err := c.Initialize(t.Context(), vmre.ProtocolVersion, "127.0.0.1:9000"); err != nil {
		t.Fatalf("Initialize: %v", err)
	}
	if res := <-hs.result; res.err != nil {
		t.Errorf("result = %+v", res)
	}
}
