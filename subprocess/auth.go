package subprocess

import (
	"context"
	"fmt"

	"github.com/rs/zerolog"
	"github.com/vmre/vmre"
	"github.com/vmre/vmre/internal/handshakeauth"
	"github.com/vmre/vmre/server"
)

// newAuthPolicy returns the policy that guards one launch's handshake
// server, or nil when every caller is let through (mode none). token is
// the secret the launch puts in the plugin's environment; log gets one
// warning per refused caller, never the token; refusals (may be nil)
// counts them.
func newAuthPolicy(mode handshakeauth.Mode, token string, log zerolog.Logger, refusals *server.Refusals) (*handshakeauth.Policy, error) {
	if mode == handshakeauth.ModeNone {
		return nil, nil
	}
	p, err := handshakeauth.New(handshakeauth.Config{Mode: mode, Token: token, Log: log, Refusals: refusals})
	if err != nil {
		return nil, fmt.Errorf("%w: handshake auth: %w", vmre.ErrHandshakeFailed, err)
	}
	return p, nil
}

// authorizeLaunch is the shared handshake handler's [server.Authorizer]:
// it passes each call to the policy of the launch whose server it arrived
// on (see sharedHandler). A call with a valid token costs a SHA-256 of the
// header and a comparison; only a call without one is looked up in /proc.
func authorizeLaunch(ctx context.Context, call server.Call) error {
	hs, ok := ctx.Value(handshakeKey{}).(*handshake)
	if !ok {
		return fmt.Errorf("%w: not a launch's handshake server", vmre.ErrPermissionDenied)
	}
	if hs.auth == nil {
		return nil
	}
	return hs.auth.Authorize(ctx, call)
}

var _ server.Authorizer = authorizeLaunch
