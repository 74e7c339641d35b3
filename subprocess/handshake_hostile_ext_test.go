//go:build linux

package subprocess_test

import (
	"bytes"
	"context"
	"encoding/binary"
	"fmt"
	"net"
	"os"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/rs/zerolog"
	"github.com/vmre/vmre/subprocess"
	"golang.org/x/net/http2"
	"golang.org/x/net/http2/hpack"
)

// TestStopEndsDespiteHandshakeClientThatDoesNotRead: a local process that
// found a launch's handshake port has its Initialize refused, keeps its
// connection, calls on and on, and never reads the answers. Once the
// kernel's buffers are full, the engine's write of an answer blocks. The
// plugin's own handshake then succeeds, and the plugin's Stop must still
// return: the handshake server's end must not wait for that write.
//
// The launch's mode is none: in the other modes the refused caller's
// connection is paced (see handshakeauth), and its answers trickle out
// for minutes before the buffers are full. Pacing is no help here
// anyway: a caller with the token is never paced.
func TestStopEndsDespiteHandshakeClientThatDoesNotRead(t *testing.T) {
	t.Parallel()
	gateR, gateW, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	defer gateR.Close()
	closeGate := sync.OnceFunc(func() { gateW.Close() })
	t.Cleanup(closeGate)
	cmd := childCmd(t, "race-client", noRaceExitDelay)
	cmd.ExtraFiles = []*os.File{gateR}
	out := newCollector()
	cfg := &subprocess.Config{
		HandshakeTimeout: time.Minute,
		HandshakeAuth:    subprocess.HandshakeAuthNone,
		Log:              zerolog.New(zerolog.NewTestWriter(t)),
		OnOutput:         out.add,
	}
	type outcome struct {
		proc *subprocess.Process
		err  error
	}
	done := make(chan outcome, 1)
	go func() {
		p, err := subprocess.Bootstrap(context.Background(), cmd, cfg)
		done <- outcome{p, err}
	}()
	line := out.waitFor(t, func(l outLine) bool { return strings.HasPrefix(l.Text, "engine-addr ") })
	c := stalledHandshakeClient(t, strings.TrimPrefix(line.Text, "engine-addr "))
	defer c.Close()

	closeGate()
	o := <-done
	if o.err != nil {
		t.Fatalf("Bootstrap: %v", o.err)
	}
	stopped := make(chan struct{})
	go func() { defer close(stopped); o.proc.Stop(context.Background()) }()
	select {
	case <-stopped:
	case <-time.After(2 * time.Minute):
		t.Fatal("Stop has not returned after 2 minutes: the handshake server waits for a write to a client that does not read")
	}
}

// stalledHandshakeClient connects to a handshake server at addr, has a
// call answered, then calls on without reading until the server's
// answers stop coming (its write is blocked), and returns the
// connection.
func stalledHandshakeClient(t *testing.T, addr string) net.Conn {
	t.Helper()
	d := net.Dialer{Control: func(_, _ string, rc syscall.RawConn) error {
		var err error
		_ = rc.Control(func(fd uintptr) {
			err = syscall.SetsockoptInt(int(fd), syscall.SOL_SOCKET, syscall.SO_RCVBUF, 4096)
		})
		return err
	}}
	c, err := d.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	// No dynamic HPACK table: every answer is sent in full.
	var b bytes.Buffer
	b.WriteString(http2.ClientPreface)
	fr := http2.NewFramer(&b, nil)
	_ = fr.WriteSettings(http2.Setting{ID: http2.SettingHeaderTableSize, Val: 0})
	_ = fr.WriteSettingsAck()
	var hb bytes.Buffer
	enc := hpack.NewEncoder(&hb)
	enc.SetMaxDynamicTableSizeLimit(0)
	// A message that does not decode: refused, and deciding nothing.
	msg := []byte{0x0a, 0xff}
	body := binary.BigEndian.AppendUint32([]byte{0}, uint32(len(msg)))
	body = append(body, msg...)
	call := func(id uint32) {
		hb.Reset()
		for _, f := range [][2]string{{":method", "POST"}, {":scheme", "http"}, {":authority", addr},
			{":path", "/vm.runtime.Runtime/Initialize"}, {"content-type", "application/grpc"}, {"te", "trailers"}} {
			_ = enc.WriteField(hpack.HeaderField{Name: f[0], Value: f[1]})
		}
		_ = fr.WriteHeaders(http2.HeadersFrameParam{StreamID: id, BlockFragment: hb.Bytes(), EndHeaders: true})
		_ = fr.WriteData(id, true, body)
	}
	call(1)
	if _, err := c.Write(b.Bytes()); err != nil {
		t.Fatal(err)
	}
	// The first answer.
	rfr := http2.NewFramer(nil, c)
	rfr.ReadMetaHeaders = hpack.NewDecoder(4096, nil)
	for ended := false; !ended; {
		f, err := rfr.ReadFrame()
		if err != nil {
			t.Fatalf("first answer: %v", err)
		}
		ended = f.Header().StreamID == 1 && f.Header().Flags.Has(http2.FlagHeadersEndStream)
	}
	// Call on, reading nothing, in the background; the server's
	// answers pile up in the client's receive queue until its writes
	// block, then the queue stops growing.
	go func() {
		for id := uint32(3); ; id += 2 {
			b.Reset()
			call(id)
			if _, err := c.Write(b.Bytes()); err != nil {
				return
			}
		}
	}()
	// The server's send queue grows with each answer; once its write is
	// blocked, it stays as it is. Nothing signals that: poll it.
	entry := fmt.Sprintf("%s %s ", procNetAddr(c.RemoteAddr()), procNetAddr(c.LocalAddr()))
	const quiet = 3 * time.Second
	last, since := "", time.Now()
	for time.Since(since) < quiet || last == "" {
		time.Sleep(100 * time.Millisecond)
		if q := sendQueue(t, entry); q != last {
			last, since = q, time.Now()
		}
	}
	n, _ := strconv.ParseUint(last, 16, 64)
	t.Logf("the server's send queue stopped at %d bytes", n)
	return c
}

// procNetAddr spells a loopback TCP address as /proc/net/tcp does.
func procNetAddr(a net.Addr) string {
	return fmt.Sprintf("0100007F:%04X", a.(*net.TCPAddr).Port)
}

// sendQueue returns the send queue (tx_queue, hex) of the socket whose
// /proc/net/tcp line has entry as its addresses, "" if it is not queued.
func sendQueue(t *testing.T, entry string) string {
	b, err := os.ReadFile("/proc/net/tcp")
	if err != nil {
		t.Fatal(err)
	}
	for _, l := range strings.Split(string(b), "\n") {
		if _, rest, ok := strings.Cut(l, ": "); ok && strings.HasPrefix(rest, entry) {
			fields := strings.Fields(rest)
			if q, _, _ := strings.Cut(fields[3], ":"); strings.Trim(q, "0") != "" {
				return q
			}
		}
	}
	return ""
}
