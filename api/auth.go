package api

import (
	"context"
	"errors"
	"strings"

	"connectrpc.com/connect"
	"github.com/vmre/vmre/gen/vmre/v1/vmrev1connect"
	"github.com/vmre/vmre/internal/token"
)

// guarded lists the procedures that need the bearer token: the ones that
// change something.
var guarded = map[string]bool{
	vmrev1connect.RuntimeServiceStopRuntimeProcedure:    true,
	vmrev1connect.RuntimeServiceRestartRuntimeProcedure: true,
	vmrev1connect.RuntimeServiceReloadConfigProcedure:   true,
}

var (
	errNoToken  = errors.New(`missing "Authorization: Bearer <token>": stop, restart and reload need the engine's api token (vmre run prints the path of its token file)`)
	errBadToken = errors.New("wrong api token")
)

// newAuthInterceptor refuses guarded calls without the right bearer token.
// All guarded procedures are unary.
func newAuthInterceptor(token string) connect.UnaryInterceptorFunc {
	return func(next connect.UnaryFunc) connect.UnaryFunc {
		return func(ctx context.Context, req connect.AnyRequest) (connect.AnyResponse, error) {
			if guarded[req.Spec().Procedure] {
				if err := checkBearer(req.Header().Get("Authorization"), token); err != nil {
					return nil, connect.NewError(connect.CodeUnauthenticated, err)
				}
			}
			return next(ctx, req)
		}
	}
}

func checkBearer(header, expected string) error {
	scheme, presented, ok := strings.Cut(strings.TrimSpace(header), " ")
	if !ok || !strings.EqualFold(scheme, "Bearer") || strings.TrimSpace(presented) == "" {
		return errNoToken
	}
	if !token.Equal(strings.TrimSpace(presented), expected) {
		return errBadToken
	}
	return nil
}
