//go:build unix

package h2unary_test

import (
	"net/http"
	"testing"
	"time"

	"github.com/vmre/vmre/internal/h2unary"
)

// The tests in this file play clients that HTTP/2 allows and that
// ServeConn has to follow: late or missing acknowledgements, frame types
// it does not know, and connections that outlast one flow-control window.

// TestHandOverWithoutSettingsAck: a client need not acknowledge the
// server's SETTINGS before its call is answered. One whose call ServeConn
// does not serve and that never acknowledges them is answered by the
// fallback at once, not at its read timeout.
func TestHandOverWithoutSettingsAck(t *testing.T) {
	t.Parallel()
	s := newServer()
	// Shorter than the test's own bound, so that a ServeConn that waits
	// for the acknowledgement closes the connection and fails the test.
	s.ReadTimeout = 20 * time.Second
	sv := serve(t, s)
	var protocols http.Protocols
	protocols.SetUnencryptedHTTP2(true)
	fallback := &http.Server{Handler: grpcOK, Protocols: &protocols}
	ln := h2unary.NewListener()
	served := make(chan struct{})
	go func() { defer close(served); _ = fallback.Serve(ln) }()
	t.Cleanup(func() { _ = fallback.Close(); <-served })
	go func() {
		<-sv.done // after HandOver, if ServeConn hands the connection over
		select {
		case rc := <-sv.handed:
			if !ln.Put(rc) {
				_ = rc.Close()
			}
		default:
		}
	}()
	callHeaders(sv.fr, sv.enc, &sv.hb, "/svc/Other", true)
	if err := sv.fr.WriteData(1, true, grpcBody); err != nil {
		t.Fatal(err)
	}
	if got := sv.awaitEnd(t, 1); got != "0" {
		t.Fatalf("grpc-status %q, want 0 from the fallback", got)
	}
}

// TestUnknownFrameAfterAnswerIsIgnored: HTTP/2 endpoints ignore frames of
// a type they do not know (RFC 9113, section 4.1); a client that sends
// one between calls gets its next call answered, not a GOAWAY.
func TestUnknownFrameAfterAnswerIsIgnored(t *testing.T) {
	t.Parallel()
	sv := serve(t, newServer())
	if err := sv.fr.WriteSettingsAck(); err != nil {
		t.Fatal(err)
	}
	sv.callOK(t, 1)
	if err := sv.fr.WriteRawFrame(0xfa, 0, 0, []byte("extension")); err != nil {
		t.Fatal(err)
	}
	sv.callOK(t, 3)
}

// TestWindowsLastPastOneWindow: calls on one connection whose requests
// and answers add up to more than HTTP/2's initial windows of 64 KiB. The
// server must give the client back the window its calls used, as
// net/http's server does, and take the client's WINDOW_UPDATEs for its
// answers; a client that honours flow control otherwise stalls, and the
// server runs out of window to answer in.
func TestWindowsLastPastOneWindow(t *testing.T) {
	t.Parallel()
	const msg = 8 << 10
	answer := make([]byte, 5+3<<10) // one of the handler's chunks, at most
	answer[3], answer[4] = byte((len(answer)-5)>>8), byte(len(answer)-5)
	s := newServer()
	s.MaxMessageBytes = msg
	s.Handler = http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/grpc")
		_, _ = w.Write(answer)
		w.Header().Set(http.TrailerPrefix+"Grpc-Status", "0")
	})
	sv := serve(t, s)
	if err := sv.fr.WriteSettingsAck(); err != nil {
		t.Fatal(err)
	}
	body := make([]byte, 5+msg)
	body[3] = msg >> 8
	sendWindow := int64(65535) // what the client may still send
	for i := range 2 * 65535 / len(answer) {
		id := uint32(2*i + 1)
		if int64(len(body)) > sendWindow {
			t.Fatalf("call %d: the client's send window is %d bytes, less than a call's %d: the server does not give back what calls used", i, sendWindow, len(body))
		}
		sv.headers(t, id)
		if err := sv.fr.WriteData(id, true, body); err != nil {
			t.Fatal(err)
		}
		sendWindow -= int64(len(body))
		got, granted, received := sv.awaitEndCounting(t, id)
		if got != "0" {
			t.Fatalf("call %d: grpc-status %q, want 0", i, got)
		}
		sendWindow += granted
		// As a client gives back what it has read.
		if err := sv.fr.WriteWindowUpdate(0, uint32(received)); err != nil {
			t.Fatal(err)
		}
	}
}
