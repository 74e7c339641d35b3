package api

import (
	"context"
	"errors"
	"fmt"
	"strings"

	"connectrpc.com/connect"
	"github.com/rs/zerolog"
	"github.com/vmre/vmre"
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

// tokenSource returns the API token a guarded call must present.
type tokenSource func() string

// newTokenSource returns the fixed token, or the token kept in file,
// re-read when the file changes; exactly one of them must be set.
func newTokenSource(fixed, file string, log zerolog.Logger) (tokenSource, error) {
	switch {
	case fixed != "" && file != "":
		return nil, fmt.Errorf("%w: api token and token file are both set", vmre.ErrInvalidConfig)
	case file != "":
		f, err := token.OpenFile(file)
		if err != nil {
			return nil, err
		}
		return func() string {
			secret, err := f.Token()
			if err != nil {
				log.Warn().Err(err).Msg("api token file refused; refusing guarded calls until it is fixed")
			}
			return secret
		}, nil
	case fixed == "":
		return nil, fmt.Errorf("%w: api token is empty", vmre.ErrInvalidConfig)
	default:
		return func() string { return fixed }, nil
	}
}

// newAuthInterceptor refuses guarded calls without the right bearer token.
// All guarded procedures are unary.
func newAuthInterceptor(tokens tokenSource) connect.UnaryInterceptorFunc {
	return func(next connect.UnaryFunc) connect.UnaryFunc {
		return func(ctx context.Context, req connect.AnyRequest) (connect.AnyResponse, error) {
			if guarded[req.Spec().Procedure] {
				if err := checkBearer(req.Header().Get("Authorization"), tokens()); err != nil {
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
