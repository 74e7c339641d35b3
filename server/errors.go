package server

import (
	"context"
	"errors"
	"fmt"

	"connectrpc.com/connect"
	"github.com/vmre/vmre"
)

// CodeOf maps an error from an [vmre.Initializer] or [Authorizer] to the
// status code sent over the wire. It is the only place the server decides
// codes; client.New maps them back.
func CodeOf(err error) connect.Code {
	switch {
	case errors.Is(err, vmre.ErrInvalidRequest):
		return connect.CodeInvalidArgument
	case errors.Is(err, vmre.ErrProtocolVersionMismatch):
		return connect.CodeFailedPrecondition
	case errors.Is(err, vmre.ErrAlreadyInitialized):
		return connect.CodeAlreadyExists
	case errors.Is(err, vmre.ErrUnauthenticated):
		return connect.CodeUnauthenticated
	case errors.Is(err, vmre.ErrPermissionDenied):
		return connect.CodePermissionDenied
	case errors.Is(err, vmre.ErrHandshakeTimeout), errors.Is(err, context.DeadlineExceeded):
		return connect.CodeDeadlineExceeded
	case errors.Is(err, context.Canceled):
		return connect.CodeCanceled
	case errors.Is(err, vmre.ErrProcessExited), errors.Is(err, vmre.ErrProcessNotFound):
		return connect.CodeNotFound
	default:
		return connect.CodeInternal
	}
}

func toConnectError(err error) error {
	var connectErr *connect.Error
	if errors.As(err, &connectErr) {
		return connectErr
	}
	return connect.NewError(CodeOf(err), err)
}

func invalidf(format string, args ...any) error {
	return fmt.Errorf("%w: %s", vmre.ErrInvalidRequest, fmt.Sprintf(format, args...))
}
