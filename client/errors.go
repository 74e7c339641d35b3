package client

import (
	"context"
	"errors"
	"strings"

	"connectrpc.com/connect"
	"github.com/vmre/vmre"
)

// sentinelOf maps a status code (and, for code unknown, the message) back to
// the vmre sentinel that classifies it. It is the inverse of server.CodeOf
// and the only place this package decides what a code means. It returns nil
// for codes that have no sentinel (internal, canceled, ...).
func sentinelOf(code connect.Code, message string) error {
	switch code {
	case connect.CodeInvalidArgument:
		return vmre.ErrInvalidRequest
	case connect.CodeFailedPrecondition:
		return vmre.ErrProtocolVersionMismatch
	case connect.CodeAlreadyExists:
		return vmre.ErrAlreadyInitialized
	case connect.CodeUnauthenticated:
		return vmre.ErrUnauthenticated
	case connect.CodePermissionDenied:
		return vmre.ErrPermissionDenied
	case connect.CodeDeadlineExceeded:
		return vmre.ErrHandshakeTimeout
	case connect.CodeUnavailable, connect.CodeNotFound:
		// Unavailable: the engine could not be reached at all. Not found:
		// vmre's engine reports a process it does not know (server.CodeOf).
		return vmre.ErrProcessNotFound
	case connect.CodeUnknown:
		// avalanchego's and luxd's engines are grpc-go servers returning
		// plain errors, which travel as code unknown; their mismatch reads
		// "RPCChainVM protocol version mismatch between AvalancheGo and
		// Virtual Machine plugin. ...".
		if strings.Contains(strings.ToLower(message), vmre.ErrProtocolVersionMismatch.Error()) {
			return vmre.ErrProtocolVersionMismatch
		}
	}
	return nil
}

// fromWire turns an error from the RPC into this package's error:
// it wraps vmre.ErrHandshakeFailed, the sentinel of its code and the
// original error (a *connect.Error), and keeps the engine's message readable.
// If the caller's context has ended, the error also wraps the context's
// error: connect-go does not always (when the server resets the stream at
// the same deadline, its error carries the reset and names the deadline
// only in text), and a caller checks errors.Is(err,
// context.DeadlineExceeded).
func fromWire(ctx context.Context, err error) error {
	var connectErr *connect.Error
	if !errors.As(err, &connectErr) {
		// connect-go returns *connect.Error from every call; keep the
		// classification total anyway.
		connectErr = connect.NewError(connect.CodeUnknown, err)
	}
	e := &handshakeError{
		kind:  sentinelOf(connectErr.Code(), connectErr.Message()),
		cause: err,
		code:  connectErr.Code(),
		msg:   connectErr.Message(),
	}
	if ctxErr := ctx.Err(); ctxErr != nil && !errors.Is(err, ctxErr) {
		e.ctxErr = ctxErr
	}
	return e
}

// handshakeError is a failed Initialize call. It is unexported because
// callers need nothing from it beyond errors.Is (the sentinels) and
// errors.As (the *connect.Error).
type handshakeError struct {
	kind   error // sentinel for the code, or nil
	cause  error // what connect-go returned
	code   connect.Code
	msg    string // the engine's or transport's message
	ctxErr error  // the caller's context error, when cause lacks it
}

// Error reads "handshake failed: <sentinel>: <message>", leaving out the
// sentinel when the message already says it (as the engine's mismatch
// message does) and naming the code when there is no sentinel:
//
//	handshake failed: protocol version mismatch engine: 42 vm: 41
//	handshake failed: vm process not found: dial tcp 127.0.0.1:1: connect: connection refused
//	handshake failed: internal: boom
func (e *handshakeError) Error() string {
	prefix := vmre.ErrHandshakeFailed.Error()
	// An engine may already have classified the message itself.
	msg := strings.TrimPrefix(e.msg, prefix+": ")
	parts := make([]string, 0, 3)
	parts = append(parts, prefix)
	switch {
	case e.kind == nil:
		parts = append(parts, e.code.String())
	case !strings.Contains(strings.ToLower(msg), e.kind.Error()):
		parts = append(parts, e.kind.Error())
	}
	if msg != "" {
		parts = append(parts, msg)
	}
	return strings.Join(parts, ": ")
}

// Unwrap exposes vmre.ErrHandshakeFailed, the sentinel of the code and the
// *connect.Error (through it, context.DeadlineExceeded and the like).
func (e *handshakeError) Unwrap() []error {
	errs := []error{vmre.ErrHandshakeFailed}
	if e.kind != nil {
		errs = append(errs, e.kind)
	}
	errs = append(errs, e.cause)
	if e.ctxErr != nil {
		errs = append(errs, e.ctxErr)
	}
	return errs
}
