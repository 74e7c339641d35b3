//go:build unix

package h2unary_test

import (
	"bytes"
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"runtime"
	"syscall"
	"testing"
	"time"

	"github.com/vmre/vmre/internal/h2unary"
	"golang.org/x/net/http2"
	"golang.org/x/net/http2/hpack"
)

// The tests in this file play a hostile local client against ServeConn on
// real loopback sockets, frame by frame.

const testPath = "/svc/M"

// grpcOK answers every call with an empty gRPC message and status 0, as
// the handshake's handler answers a valid Initialize.
var grpcOK = http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
	_, _ = io.Copy(io.Discard, r.Body)
	w.Header().Set("Content-Type", "application/grpc")
	_, _ = w.Write([]byte{0, 0, 0, 0, 0})
	w.Header().Set(http.TrailerPrefix+"Grpc-Status", "0")
})

var grpcBody = []byte{0, 0, 0, 0, 2, 8, 42}

// served is a ServeConn running on the server side of one connection.
type served struct {
	client  net.Conn
	fr      *http2.Framer // the client's
	enc     *hpack.Encoder
	hb      bytes.Buffer
	cancel  context.CancelFunc
	done    chan struct{} // closed when ServeConn has returned
	handed  chan *h2unary.ReplayConn
	panicky chan any // what ServeConn panicked with
}

// smallBuffers makes a socket's kernel buffers as small as Linux allows,
// so that a peer that stops reading, or a server that stops reading, is
// felt after a few KiB rather than a few MiB.
func smallBuffers(network, address string, rc syscall.RawConn) error {
	var err error
	_ = rc.Control(func(fd uintptr) {
		if err = syscall.SetsockoptInt(int(fd), syscall.SOL_SOCKET, syscall.SO_RCVBUF, 4096); err == nil {
			err = syscall.SetsockoptInt(int(fd), syscall.SOL_SOCKET, syscall.SO_SNDBUF, 4096)
		}
	})
	return err
}

// smallPair returns both ends of a loopback TCP connection with small
// kernel buffers.
func smallPair(t *testing.T) (server, client net.Conn) {
	t.Helper()
	lc := net.ListenConfig{Control: smallBuffers}
	ln, err := lc.Listen(context.Background(), "tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	d := net.Dialer{Control: smallBuffers}
	if client, err = d.Dial("tcp", ln.Addr().String()); err != nil {
		t.Fatal(err)
	}
	if server, err = ln.Accept(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = client.Close(); _ = server.Close() })
	return server, client
}

// serve runs s.ServeConn on a new connection and returns the client's
// side, which has sent the preface and empty SETTINGS.
func serve(t *testing.T, s *h2unary.Server) *served {
	t.Helper()
	server, client := smallPair(t)
	ctx, cancel := context.WithCancel(context.Background())
	sv := &served{
		client: client, cancel: cancel, done: make(chan struct{}),
		handed: make(chan *h2unary.ReplayConn, 1), panicky: make(chan any, 1),
	}
	s.HandOver = func(c *h2unary.ReplayConn) { sv.handed <- c }
	go func() {
		defer close(sv.done)
		defer func() {
			if v := recover(); v != nil {
				sv.panicky <- v
				_ = server.Close()
			}
		}()
		s.ServeConn(ctx, context.Background(), server)
	}()
	t.Cleanup(func() { cancel(); _ = client.Close(); <-sv.done })
	sv.greet(t)
	return sv
}

// greet makes the client's framer and header encoder on sv.client and
// sends the preface and empty SETTINGS.
func (sv *served) greet(t *testing.T) {
	t.Helper()
	sv.fr = http2.NewFramer(sv.client, sv.client)
	sv.fr.ReadMetaHeaders = hpack.NewDecoder(4096, nil)
	sv.enc = hpack.NewEncoder(&sv.hb)
	if _, err := sv.client.Write([]byte(http2.ClientPreface)); err != nil {
		t.Fatal(err)
	}
	if err := sv.fr.WriteSettings(); err != nil {
		t.Fatal(err)
	}
}

func newServer() *h2unary.Server {
	return &h2unary.Server{
		Handler:         grpcOK,
		Path:            testPath,
		ContentTypes:    []string{"application/grpc"},
		MaxMessageBytes: 64,
		Settings:        []http2.Setting{{ID: http2.SettingMaxFrameSize, Val: 1 << 16}},
		ReadTimeout:     time.Minute,
	}
}

// headers writes the HEADERS of a call on stream id.
func (sv *served) headers(t *testing.T, id uint32) {
	t.Helper()
	sv.hb.Reset()
	for _, f := range [][2]string{{":method", "POST"}, {":scheme", "http"}, {":authority", "x"}, {":path", testPath}, {"content-type", "application/grpc"}, {"te", "trailers"}} {
		_ = sv.enc.WriteField(hpack.HeaderField{Name: f[0], Value: f[1]})
	}
	if err := sv.fr.WriteHeaders(http2.HeadersFrameParam{StreamID: id, BlockFragment: sv.hb.Bytes(), EndHeaders: true}); err != nil {
		t.Fatal(err)
	}
}

// call writes a whole call on stream id.
func (sv *served) call(t *testing.T, id uint32) {
	t.Helper()
	sv.headers(t, id)
	if err := sv.fr.WriteData(id, true, grpcBody); err != nil {
		t.Fatal(err)
	}
}

// callOK writes a whole call on stream id and fails the test unless it
// is answered with grpc-status 0.
func (sv *served) callOK(t *testing.T, id uint32) {
	t.Helper()
	sv.call(t, id)
	if got := sv.awaitEnd(t, id); got != "0" {
		t.Fatalf("stream %d: grpc-status %q, want 0", id, got)
	}
}

// awaitEnd reads frames until stream id ends, and returns its grpc-status
// ("" if it ended without one); it fails the test if the connection ends
// first or ServeConn panics.
func (sv *served) awaitEnd(t *testing.T, id uint32) string {
	t.Helper()
	status, _, _ := sv.awaitEndCounting(t, id)
	return status
}

// awaitEndCounting is awaitEnd that also returns what the server's
// WINDOW_UPDATEs on stream 0 granted and the DATA bytes it sent meanwhile.
func (sv *served) awaitEndCounting(t *testing.T, id uint32) (status string, granted, received int64) {
	t.Helper()
	for {
		f, err := sv.fr.ReadFrame()
		if err != nil {
			select {
			case v := <-sv.panicky:
				t.Fatalf("ServeConn panicked (in the engine, a crash): %v", v)
			case <-sv.done:
				select {
				case v := <-sv.panicky:
					t.Fatalf("ServeConn panicked (in the engine, a crash): %v", v)
				default:
				}
			case <-time.After(10 * time.Second):
			}
			t.Fatalf("stream %d: connection ended: %v", id, err)
		}
		switch f := f.(type) {
		case *http2.WindowUpdateFrame:
			if f.StreamID == 0 {
				granted += int64(f.Increment)
			}
		case *http2.MetaHeadersFrame:
			if f.StreamID == id && f.StreamEnded() {
				return headerValue(f, "grpc-status"), granted, received
			}
		case *http2.DataFrame:
			received += int64(f.Length)
			if f.StreamID == id && f.StreamEnded() {
				return "", granted, received
			}
		case *http2.RSTStreamFrame:
			if f.StreamID == id {
				t.Fatalf("stream %d reset: %v", id, f.ErrCode)
			}
		case *http2.GoAwayFrame:
			t.Fatalf("GOAWAY (last stream %d, %v) before stream %d ended", f.LastStreamID, f.ErrCode, id)
		}
	}
}

func headerValue(f *http2.MetaHeadersFrame, name string) string {
	for _, hf := range f.RegularFields() {
		if hf.Name == name {
			return hf.Value
		}
	}
	return ""
}

// TestLateSettingsAckOnSecondCall: a client may acknowledge the server's
// SETTINGS whenever it likes. One that has its first call answered
// before acknowledging, then acknowledges in the middle of its second
// call (after its HEADERS, before its DATA), gets that call answered
// too; the acknowledgement must not be taken out of a replay that no
// longer exists.
func TestLateSettingsAckOnSecondCall(t *testing.T) {
	t.Parallel()
	sv := serve(t, newServer())
	sv.callOK(t, 1)
	sv.headers(t, 3)
	if err := sv.fr.WriteSettingsAck(); err != nil {
		t.Fatal(err)
	}
	if err := sv.fr.WriteData(3, true, grpcBody); err != nil {
		t.Fatal(err)
	}
	if got := sv.awaitEnd(t, 3); got != "0" {
		t.Fatalf("second call: grpc-status %q, want 0", got)
	}
}

// TestEvenStreamIsNotAnswered: clients open odd-numbered streams only
// (RFC 9113, section 5.1.1); net/http's server answers a HEADERS frame on
// an even one with a connection error. ServeConn must not answer it as a
// call: it hands the connection over, and net/http answers as it does.
func TestEvenStreamIsNotAnswered(t *testing.T) {
	t.Parallel()
	sv := serve(t, newServer())
	if err := sv.fr.WriteSettingsAck(); err != nil {
		t.Fatal(err)
	}
	sv.call(t, 2)
	answered := make(chan http2.Frame, 1)
	go func() {
		for {
			f, err := sv.fr.ReadFrame()
			if err != nil {
				return
			}
			if f.Header().StreamID == 2 {
				answered <- f
				return
			}
		}
	}()
	select {
	case rc := <-sv.handed:
		_ = rc.Close()
	case f := <-answered:
		t.Fatalf("ServeConn answered a call on stream 2 (%v) instead of handing it over", f)
	case <-sv.done:
		// ServeConn returns right after a handover: done and handed
		// may both be ready.
		select {
		case rc := <-sv.handed:
			_ = rc.Close()
		default:
			t.Fatal("ServeConn closed the connection instead of handing it over")
		}
	case <-time.After(30 * time.Second):
		t.Fatal("no handover of a call on stream 2")
	}
}

// TestCanceledServeConnEndsWhileWriteBlocks: a client that has had its
// call answered, then sends PINGs and never reads their
// acknowledgements, blocks the server's writes once the kernel's buffers
// are full. When ctx is done (the launch is over: the engine stops the
// handshake server and waits for its connections), ServeConn must return
// anyway: a write blocked forever would hold the launch's Stop, or a
// failed Bootstrap, forever.
func TestCanceledServeConnEndsWhileWriteBlocks(t *testing.T) {
	t.Parallel()
	sv := serve(t, newServer())
	if err := sv.fr.WriteSettingsAck(); err != nil {
		t.Fatal(err)
	}
	sv.callOK(t, 1)
	// Ping until the server stops reading: its write of an
	// acknowledgement is then blocked, since the client reads nothing.
	var pings bytes.Buffer
	pfr := http2.NewFramer(&pings, nil)
	for range 256 {
		_ = pfr.WritePing(false, [8]byte{1})
	}
	for stalled := false; !stalled; {
		_ = sv.client.SetWriteDeadline(time.Now().Add(2 * time.Second))
		_, err := sv.client.Write(pings.Bytes())
		var ne net.Error
		stalled = errors.As(err, &ne) && ne.Timeout()
		if err != nil && !stalled {
			t.Fatalf("ping: %v", err)
		}
	}
	sv.cancel()
	select {
	case <-sv.done:
	case <-time.After(30 * time.Second):
		t.Fatal("ServeConn did not return 30 s after its ctx was done: its write to a client that does not read is blocked")
	}
}

// flood is a client's endless stream of frames that each make no
// progress towards an answer: what a hostile client sends to make the
// server hold what it reads.
type flood struct {
	name string
	// setup writes what comes before the flood; unit is the flood's
	// repeated part.
	setup func(fr *http2.Framer, enc *hpack.Encoder, hb *bytes.Buffer)
	unit  func(fr *http2.Framer)
}

func callHeaders(fr *http2.Framer, enc *hpack.Encoder, hb *bytes.Buffer, path string, endHeaders bool) {
	hb.Reset()
	for _, f := range [][2]string{{":method", "POST"}, {":scheme", "http"}, {":authority", "x"}, {":path", path}, {"content-type", "application/grpc"}, {"te", "trailers"}} {
		_ = enc.WriteField(hpack.HeaderField{Name: f[0], Value: f[1]})
	}
	_ = fr.WriteHeaders(http2.HeadersFrameParam{StreamID: 1, BlockFragment: hb.Bytes(), EndHeaders: endHeaders})
}

var floods = []flood{
	{
		name: "empty CONTINUATION frames",
		setup: func(fr *http2.Framer, enc *hpack.Encoder, hb *bytes.Buffer) {
			callHeaders(fr, enc, hb, testPath, false)
		},
		unit: func(fr *http2.Framer) { _ = fr.WriteContinuation(1, false, nil) },
	},
	{
		name: "padded empty DATA frames",
		setup: func(fr *http2.Framer, enc *hpack.Encoder, hb *bytes.Buffer) {
			_ = fr.WriteSettingsAck()
			callHeaders(fr, enc, hb, testPath, true)
		},
		unit: func(fr *http2.Framer) { _ = fr.WriteDataPadded(1, false, nil, make([]byte, 255)) },
	},
	{
		name: "WINDOW_UPDATE frames",
		setup: func(fr *http2.Framer, enc *hpack.Encoder, hb *bytes.Buffer) {
			_ = fr.WriteSettingsAck()
		},
		unit: func(fr *http2.Framer) { _ = fr.WriteWindowUpdate(0, 1) },
	},
}

// TestFloodBeforeAnswerHoldsLittle: frames that make no progress towards
// an answer, sent before the first answer, must not be kept without
// bound. ServeConn keeps what it reads before its first answer, for a
// replay to the fallback; a client that sends endless such frames (all
// allowed by HTTP/2, none acted on) must not make it keep them all until
// its read deadline (the launch's handshake timeout), a connection at a
// time. net/http's own server reads the same frames and keeps none of
// them (its live heap grows by nothing for 8 MiB of each).
//
// Not parallel: it measures the heap.
func TestFloodBeforeAnswerHoldsLittle(t *testing.T) {
	const sent = 4 << 20
	for _, fl := range floods {
		t.Run(fl.name, func(t *testing.T) {
			client := serve(t, newServer()).client
			go func() { _, _ = io.Copy(io.Discard, client) }()
			var setup, units, hb bytes.Buffer
			fl.setup(http2.NewFramer(&setup, nil), hpack.NewEncoder(&hb), &hb)
			ufr := http2.NewFramer(&units, nil)
			for units.Len() < 64<<10 {
				fl.unit(ufr)
			}
			before := liveHeap()
			if _, err := client.Write(setup.Bytes()); err != nil {
				t.Fatal(err)
			}
			// The kernel's buffers are a few KiB: once these writes are
			// done, the server has read all but those.
			written := 0
			for written < sent {
				n, err := client.Write(units.Bytes())
				written += n
				if err != nil {
					t.Logf("the server ended the connection after %d bytes: %v", written, err)
					break
				}
			}
			grown := int64(liveHeap()) - int64(before)
			t.Logf("sent %d bytes of %s; live heap grew by %d bytes", written, fl.name, grown)
			if grown > sent/4 {
				t.Errorf("the live heap grew by %d bytes while a client sent %d bytes of %s", grown, written, fl.name)
			}
		})
	}
}

func liveHeap() uint64 {
	runtime.GC()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	return ms.HeapAlloc
}
