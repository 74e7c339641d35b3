package client

import (
	"context"
	"errors"
	"testing"
	"time"

	"connectrpc.com/connect"
	"github.com/vmre/vmre"
)

// TestFromWireKeepsCallersDeadline: when the server resets the stream at
// the caller's deadline, connect-go's error carries the reset, not
// context.DeadlineExceeded; the handshake error still matches it, and
// still classifies as a timeout. An error that already wraps the context's
// error, or a call whose context is still live, is left as it is.
func TestFromWireKeepsCallersDeadline(t *testing.T) {
	t.Parallel()
	ctx, cancel := context.WithTimeout(t.Context(), time.Nanosecond)
	defer cancel()
	<-ctx.Done()
	reset := connect.NewError(connect.CodeDeadlineExceeded, errors.New("stream error: stream ID 1; CANCEL; received from peer"))
	err := fromWire(ctx, reset)
	for _, want := range []error{vmre.ErrHandshakeFailed, vmre.ErrHandshakeTimeout, context.DeadlineExceeded} {
		if !errors.Is(err, want) {
			t.Errorf("errors.Is(%v, %v) = false", err, want)
		}
	}
	if got := connect.CodeOf(err); got != connect.CodeDeadlineExceeded {
		t.Errorf("code %v, want deadline_exceeded", got)
	}

	wrapped := connect.NewError(connect.CodeDeadlineExceeded, context.DeadlineExceeded)
	if e := fromWire(ctx, wrapped).(*handshakeError); e.ctxErr != nil {
		t.Errorf("context error added twice: %v", e.ctxErr)
	}
	live := connect.NewError(connect.CodeInternal, errors.New("boom"))
	if err := fromWire(t.Context(), live); errors.Is(err, context.DeadlineExceeded) || errors.Is(err, context.Canceled) {
		t.Errorf("a live call's error matches a context error: %v", err)
	}
}
