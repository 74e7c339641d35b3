//go:build unix

package h2unary_test

import (
	"bytes"
	"context"
	"io"
	"net"
	"net/http"
	"os"
	"syscall"
	"testing"
	"time"

	"github.com/vmre/vmre/internal/h2unary"
	"golang.org/x/net/http2"
	"golang.org/x/net/http2/hpack"
)

// clientFrames returns a client's side of a connection: the preface,
// SETTINGS (with the given settings), the acknowledgement of the server's
// SETTINGS and one call on path with body.
func clientFrames(path, contentType string, body []byte, settings ...http2.Setting) []byte {
	var b, hb bytes.Buffer
	b.WriteString(http2.ClientPreface)
	fr := http2.NewFramer(&b, nil)
	_ = fr.WriteSettings(settings...)
	_ = fr.WriteSettingsAck()
	enc := hpack.NewEncoder(&hb)
	for _, f := range [][2]string{{":method", "POST"}, {":scheme", "http"}, {":authority", "x"}, {":path", path}, {"content-type", contentType}, {"te", "trailers"}} {
		_ = enc.WriteField(hpack.HeaderField{Name: f[0], Value: f[1]})
	}
	_ = fr.WriteHeaders(http2.HeadersFrameParam{StreamID: 1, BlockFragment: hb.Bytes(), EndHeaders: true})
	_ = fr.WriteData(1, true, body)
	return b.Bytes()
}

// FuzzServeConn sends arbitrary bytes as a client's side of a connection
// and checks what ServeConn does with them: it returns once the client has
// stopped sending, and a connection it hands over replays exactly what
// the client sent, less at most one SETTINGS acknowledgement (that of the
// server's own SETTINGS, which the fallback does not send).
func FuzzServeConn(f *testing.F) {
	grpcBody := []byte{0, 0, 0, 0, 2, 8, 42}
	f.Add(clientFrames("/svc/M", "application/grpc", grpcBody))
	f.Add(clientFrames("/svc/M", "application/grpc", grpcBody, http2.Setting{ID: http2.SettingInitialWindowSize, Val: 0}))
	f.Add(clientFrames("/svc/Other", "application/grpc", grpcBody))
	f.Add(clientFrames("/svc/M", "application/json", []byte("{}")))
	f.Add([]byte("POST /svc/M HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n\r\n{}"))
	f.Add([]byte(http2.ClientPreface))
	f.Add([]byte("PRI * HTTP/2.0\r\n\r\nXX"))
	f.Fuzz(func(t *testing.T, in []byte) {
		handed := make(chan []byte, 1)
		s := &h2unary.Server{
			Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				_, _ = io.Copy(io.Discard, r.Body)
				w.Header().Set("Content-Type", "application/grpc")
				_, _ = w.Write([]byte{0, 0, 0, 0, 0})
				w.Header().Set(http.TrailerPrefix+"Grpc-Status", "0")
			}),
			Path:            "/svc/M",
			ContentTypes:    []string{"application/grpc"},
			MaxMessageBytes: 64,
			Settings:        []http2.Setting{{ID: http2.SettingMaxFrameSize, Val: 1 << 16}},
			ReadTimeout:     10 * time.Second,
			HandOver: func(c *h2unary.ReplayConn) {
				b, _ := io.ReadAll(c)
				_ = c.Close()
				handed <- b
			},
		}
		server, client := connPair(t)
		go func() {
			_, _ = client.Write(in)
			_ = client.(interface{ CloseWrite() error }).CloseWrite()
			_, _ = io.Copy(io.Discard, client)
			_ = client.Close()
		}()
		done := make(chan struct{})
		go func() { defer close(done); s.ServeConn(context.Background(), context.Background(), server) }()
		select {
		case <-done:
		case <-time.After(30 * time.Second):
			t.Fatal("ServeConn did not return once the client stopped sending")
		}
		select {
		case got := <-handed:
			if !replays(in, got) {
				t.Errorf("handed over %q, sent %q", got, in)
			}
		default:
		}
	})
}

// replays reports whether got is sent, or sent less one SETTINGS
// acknowledgement frame (empty, on stream 0, other flags and the stream
// id's reserved bit ignored, as HTTP/2 has them).
func replays(sent, got []byte) bool {
	if bytes.Equal(sent, got) {
		return true
	}
	const n = 9
	for j := range len(sent) - n + 1 {
		h := sent[j : j+n]
		isAck := h[0] == 0 && h[1] == 0 && h[2] == 0 && http2.FrameType(h[3]) == http2.FrameSettings &&
			http2.Flags(h[4]).Has(http2.FlagSettingsAck) && h[5]&0x7f == 0 && h[6] == 0 && h[7] == 0 && h[8] == 0
		if isAck && bytes.Equal(append(bytes.Clone(sent[:j]), sent[j+n:]...), got) {
			return true
		}
	}
	return false
}

// connPair returns the two ends of a Unix stream socket pair: a fuzz
// target runs thousands of inputs a second, and a loopback TCP connection
// per input runs the machine out of ephemeral ports (TIME_WAIT).
func connPair(t *testing.T) (server, client net.Conn) {
	fds, err := syscall.Socketpair(syscall.AF_UNIX, syscall.SOCK_STREAM, 0)
	if err != nil {
		t.Fatal(err)
	}
	conns := make([]net.Conn, 2)
	for i, fd := range fds {
		f := os.NewFile(uintptr(fd), "socketpair")
		conns[i], err = net.FileConn(f)
		_ = f.Close()
		if err != nil {
			t.Fatal(err)
		}
	}
	return conns[0], conns[1]
}

// ackFrames returns frames with two SETTINGS acknowledgements, after
// prefix, and those frames less the first acknowledgement.
func ackFrames(prefix string) (all, want []byte) {
	var frames, dropped bytes.Buffer
	frames.WriteString(prefix)
	fr := http2.NewFramer(&frames, nil)
	_ = fr.WriteSettings(http2.Setting{ID: http2.SettingMaxFrameSize, Val: 1 << 16})
	_ = fr.WriteData(1, false, []byte{0, 0, 0, 0, 0, 0, 0, 0, 4, 1, 0, 0, 0, 0}) // an ack's bytes inside a payload
	_ = http2.NewFramer(&dropped, nil).WriteSettingsAck()
	kept := frames.Len()
	_ = fr.WriteSettingsAck()
	_ = fr.WriteSettingsAck()
	_ = fr.WritePing(false, [8]byte{})
	all = frames.Bytes()
	return all, append(bytes.Clone(all[:kept]), all[kept+dropped.Len():]...)
}

// sendInCuts writes b to w in pieces of the sizes cuts says, the rest at
// once, then closes conn's writing side, w's or the one under it.
func sendInCuts(w io.Writer, conn net.Conn, b, cuts []byte) {
	for _, c := range cuts {
		n := min(int(c), len(b))
		if _, err := w.Write(b[:n]); err != nil {
			break
		}
		b = b[n:]
	}
	_, _ = w.Write(b)
	_ = conn.(interface{ CloseWrite() error }).CloseWrite()
}

// FuzzReplayRead reads a client's frames through a ReplayConn that
// drops the first SETTINGS acknowledgement, the first of them replayed
// and the rest sent in pieces cut where the fuzzer says, and checks that
// exactly that frame is missing.
func FuzzReplayRead(f *testing.F) {
	f.Add(uint8(30), []byte{3, 9, 40})
	f.Add(uint8(0), []byte{1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1})
	f.Add(uint8(255), []byte{})
	f.Fuzz(func(t *testing.T, replayed uint8, cuts []byte) {
		all, want := ackFrames(http2.ClientPreface)
		n := min(int(replayed), len(all))
		server, client := connPair(t)
		defer server.Close()
		rc := h2unary.NewReplayConnForTest(server, all[:n], true)
		go sendInCuts(client, client, all[n:], cuts)
		got, err := io.ReadAll(rc)
		_ = client.Close()
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(got, want) {
			t.Errorf("read  %x\nwant  %x", got, want)
		}
	})
}

// FuzzReplayWrite writes a server's frames through a ReplayConn that
// drops the first SETTINGS acknowledgement, in pieces cut where the fuzzer
// says, and checks that exactly that frame is missing.
func FuzzReplayWrite(f *testing.F) {
	f.Add([]byte{3, 9, 40})
	f.Add([]byte{1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1})
	f.Fuzz(func(t *testing.T, cuts []byte) {
		all, want := ackFrames("")

		server, client := connPair(t)
		defer server.Close()
		rc := h2unary.NewReplayConnForTest(server, nil, true)
		go sendInCuts(rc, server, all, cuts)
		got, err := io.ReadAll(client)
		_ = client.Close()
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(got, want) {
			t.Errorf("wrote %x\nwant  %x", got, want)
		}
	})
}
