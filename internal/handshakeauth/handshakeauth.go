// Package handshakeauth decides who may complete a plugin's handshake.
//
// avalanchego's handshake is "first caller wins": any local process that
// finds the engine's loopback port can call Initialize first and point the
// engine at its own server. A [Policy] narrows who may do that. The engine
// gives each launched plugin a fresh secret (see
// [github.com/vmre/vmre/internal/token]) in the plugin's environment, under [vmre.HandshakeTokenKey]; vmre's client sends it back
// in the [vmre.HandshakeTokenHeader] request header. Plugins that predate
// vmre (grpc-go clients built for avalanchego or luxd) cannot send it, so on
// Linux the Policy can instead check that the caller's TCP socket is held by
// the launched process or one of its descendants (see
// [github.com/vmre/vmre/internal/peercred]).
//
// Modes, chosen with [ParseMode] from the --handshake-auth flag:
//
//	token          a valid token is required (every OS; the only mode that
//	               works without a launched pid, e.g. when attaching)
//	peer           the caller's socket must belong to the launched process
//	               tree; tokens are ignored (Linux only)
//	token-or-peer  either one suffices (Linux only; the default there)
//	none           everyone is let through, as in avalanchego
//
// The token protects against processes of other users and against other
// hosts, not against processes of the plugin's own user. It travels in the
// plugin's environment, and on Linux any process running as the same user
// can read /proc/PID/environ of the plugin (Yama's ptrace_scope=1 does not
// restrict that), take the token and call first; so can any process the
// plugin passes its environment to. In token and token-or-peer mode such a
// process is admitted. The peer check cannot be fooled that way: presenting
// a socket the launched tree holds means taking it from that tree, which
// needs the right to ptrace-attach to it. Where processes of the same user
// are a concern, use peer mode (Linux), which vmre-client plugins pass too,
// and run the engine and its plugins as a user of their own.
//
// The default is token-or-peer on Linux and token elsewhere. A caller with
// no or a wrong token fails with an error wrapping [vmre.ErrUnauthenticated]
// (code unauthenticated); one that is not the launched process tree fails
// with [vmre.ErrPermissionDenied] (code permission_denied). The token itself
// never appears in an error or a log line.
package handshakeauth

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"

	"github.com/rs/zerolog"
	"github.com/vmre/vmre"
	"github.com/vmre/vmre/internal/peercred"
	"github.com/vmre/vmre/internal/token"
	"github.com/vmre/vmre/server"
	"golang.org/x/time/rate"
)

// Mode selects what a caller must prove. The zero value means
// [DefaultMode].
type Mode int

// The modes; see the package documentation.
const (
	ModeToken Mode = iota + 1
	ModePeer
	ModeTokenOrPeer
	ModeNone
)

var modeNames = map[Mode]string{
	ModeToken:       "token",
	ModePeer:        "peer",
	ModeTokenOrPeer: "token-or-peer",
	ModeNone:        "none",
}

// String returns the flag spelling of m ("token-or-peer").
func (m Mode) String() string {
	if m == 0 {
		m = DefaultMode()
	}
	if s, ok := modeNames[m]; ok {
		return s
	}
	return fmt.Sprintf("Mode(%d)", int(m))
}

// DefaultMode is token-or-peer where peer checks are supported (Linux) and
// token elsewhere.
func DefaultMode() Mode {
	if peercred.Supported {
		return ModeTokenOrPeer
	}
	return ModeToken
}

// ParseMode parses a --handshake-auth value. The empty string means
// [DefaultMode]. Unknown names, and peer modes on an OS that cannot check
// peers, fail with an error wrapping [vmre.ErrInvalidConfig].
func ParseMode(s string) (Mode, error) {
	if s == "" {
		return DefaultMode(), nil
	}
	for m, name := range modeNames {
		if name == s {
			return m, m.Check()
		}
	}
	return 0, fmt.Errorf("%w: handshake auth %q, want token, peer, token-or-peer or none", vmre.ErrInvalidConfig, s)
}

// Check reports whether m can be used here: the zero Mode ([DefaultMode])
// and the named modes can, except the peer modes on an OS that cannot
// check peers. Errors wrap [vmre.ErrInvalidConfig].
func (m Mode) Check() error {
	if m == 0 {
		return nil
	}
	if _, ok := modeNames[m]; !ok {
		return fmt.Errorf("%w: unknown handshake auth mode %d", vmre.ErrInvalidConfig, int(m))
	}
	if m.usesPeer() && !peercred.Supported {
		return fmt.Errorf("%w: handshake auth %s: %w", vmre.ErrInvalidConfig, m, peercred.ErrNotSupported)
	}
	return nil
}

// MarshalText implements [encoding.TextMarshaler], so a Mode works with
// [flag.TextVar].
func (m Mode) MarshalText() ([]byte, error) { return []byte(m.String()), nil }

// UnmarshalText implements [encoding.TextUnmarshaler] with [ParseMode].
func (m *Mode) UnmarshalText(b []byte) error {
	parsed, err := ParseMode(string(b))
	if err != nil {
		return err
	}
	*m = parsed
	return nil
}

func (m Mode) usesPeer() bool  { return m == ModePeer || m == ModeTokenOrPeer }
func (m Mode) usesToken() bool { return m == ModeToken || m == ModeTokenOrPeer }

// Config configures [New]. Zero values mean the documented defaults.
type Config struct {
	// Mode is the policy; default [DefaultMode].
	Mode Mode
	// Token is the secret handed to the launched plugin, which presents
	// it. Any process that learns it is admitted too (same-user processes
	// can read it from the plugin's environment; see the package
	// documentation). Required (see [token.Check]) in the token
	// and token-or-peer modes; never logged.
	Token string
	// Log receives a warning per refused call (peer address, peer pid,
	// reason), at most 10 a second: a flood of foreign callers must not
	// become a flood of log lines. The next line logged says how many were
	// left out (refused_unlogged); Refusals counts every one. The zero
	// value logs nothing.
	Log zerolog.Logger
	// MaxConcurrentPeerChecks bounds how many scans of every process's
	// descriptors run at once; default 2. A check scans only when the
	// launched tree cannot be read whole (a process of another user);
	// otherwise it costs one kernel socket query and a share of one pass
	// over the tree's descriptors (see checkPeer).
	MaxConcurrentPeerChecks int
	// Refusals counts every refused call by reason; nil counts nothing.
	Refusals *server.Refusals
}

// Policy authorizes handshake calls for one launched plugin. Its Authorize
// method is a [server.Authorizer]. It is safe for concurrent use.
type Policy struct {
	mode      Mode
	token     string
	log       zerolog.Logger
	pid       atomic.Int64
	pidSet    chan struct{} // closed by the first SetPid
	pidOnce   sync.Once
	tree      atomic.Pointer[treeView] // the launched tree; set by SetPid
	peerSlots chan struct{}
	refusals  *server.Refusals
	logLimit  refusedLimiter
	pace      *rate.Limiter // the reads of connections refused as foreign (Listener)
}

// New validates cfg and returns a Policy. Peer checks wait for
// [Policy.SetPid]. Errors wrap [vmre.ErrInvalidConfig].
func New(cfg Config) (*Policy, error) {
	mode := cfg.Mode
	if mode == 0 {
		mode = DefaultMode()
	}
	if err := mode.Check(); err != nil {
		return nil, err
	}
	if mode.usesToken() {
		if err := token.Check(cfg.Token); err != nil {
			return nil, fmt.Errorf("%w: handshake auth %s: %w", vmre.ErrInvalidConfig, mode, err)
		}
	}
	slots := cfg.MaxConcurrentPeerChecks
	if slots <= 0 {
		slots = 2
	}
	p := &Policy{mode: mode, log: cfg.Log, pidSet: make(chan struct{}), peerSlots: make(chan struct{}, slots), refusals: cfg.Refusals, pace: newPace()}
	if mode.usesToken() {
		p.token = cfg.Token
	}
	return p, nil
}

// Mode returns the policy's mode.
func (p *Policy) Mode() Mode { return p.mode }

// SetPid names the launched process whose tree passes peer checks. Call it
// as soon as the process has started: a plugin can call Initialize before
// exec.Cmd.Start has returned, so peer checks that arrive earlier wait for
// SetPid (or for their context to end). Call SetPid(0) if the process could
// not be started: waiting checks then fail at once. Safe for concurrent use.
func (p *Policy) SetPid(pid int) {
	p.pid.Store(int64(max(pid, 0)))
	if pid > 0 {
		p.tree.Store(&treeView{root: pid})
	} else {
		p.tree.Store(nil)
	}
	p.pidOnce.Do(func() { close(p.pidSet) })
}

// Authorize implements [server.Authorizer]: it returns nil for a caller the
// mode admits, or an error wrapping [vmre.ErrUnauthenticated] or
// [vmre.ErrPermissionDenied]. It blocks only for a peer check (a socket
// lookup in the kernel and /proc, at most MaxConcurrentPeerChecks at once).
// It stops waiting for the launched pid or a free slot when ctx is done; a
// lookup already under way runs to its end (see [peercred.Lookup]).
func (p *Policy) Authorize(ctx context.Context, call server.Call) error {
	if p.mode == ModeNone {
		return nil
	}
	var tokenErr error
	var tokenWhy server.RefusalReason
	if p.mode.usesToken() {
		if tokenWhy, tokenErr = p.checkToken(call.Header); tokenErr == nil {
			return nil
		}
	}
	if p.mode == ModeToken {
		markForeign(ctx)
		p.refused(call, 0, tokenWhy, tokenErr)
		return tokenErr
	}
	peerPid, peerWhy, peerErr := p.checkPeer(ctx, call)
	if peerErr == nil {
		return nil
	}
	// A wrong token is the more telling failure; a missing one is expected
	// from plugins that predate vmre, so the peer verdict stands.
	why, err := peerWhy, peerErr
	if tokenErr != nil && len(call.Header.Values(vmre.HandshakeTokenHeader)) > 0 {
		why, err = tokenWhy, tokenErr
	}
	if peerWhy == server.RefusedForeignPeer {
		markForeign(ctx)
	}
	p.refused(call, peerPid, why, err)
	return err
}

var _ server.Authorizer = (*Policy)(nil).Authorize

// errNoToken is checkToken's error for a call without the token, what
// every plugin that predates vmre sends under token-or-peer: made once,
// not at each of their handshakes, since its text never changes.
var errNoToken = fmt.Errorf("%w: no handshake token (header %s)", vmre.ErrUnauthenticated, vmre.HandshakeTokenHeader)

func (p *Policy) checkToken(h http.Header) (server.RefusalReason, error) {
	values := h.Values(vmre.HandshakeTokenHeader)
	switch {
	case len(values) == 0:
		return server.RefusedNoToken, errNoToken
	case len(values) > 1:
		return server.RefusedBadToken, fmt.Errorf("%w: %d handshake tokens, want one", vmre.ErrUnauthenticated, len(values))
	}
	if !token.Equal(values[0], p.token) {
		return server.RefusedBadToken, fmt.Errorf("%w: invalid handshake token", vmre.ErrUnauthenticated)
	}
	return 0, nil
}

// checkPeer admits a caller whose socket belongs to the launched process
// tree. It returns the pid it found (0 if none) for the log, and why it
// refused.
//
// The caller's socket is found by one query to the kernel (sock_diag), in
// parallel with other checks; whether the tree holds it is read from the
// policy's treeView, so a flood of foreign callers costs one query each
// and shares a few passes over the tree's descriptors. Only when the tree
// cannot be read whole (a process of another user) does a check fall back
// to peercred.Lookup's scan of every process, at most
// MaxConcurrentPeerChecks at once.
func (p *Policy) checkPeer(ctx context.Context, call server.Call) (pid int, why server.RefusalReason, err error) {
	const unverified = server.RefusedUnverified
	select {
	case <-p.pidSet:
	case <-ctx.Done():
		return 0, unverified, fmt.Errorf("%w: no launched process to check the caller against: %w", vmre.ErrPermissionDenied, ctx.Err())
	}
	tree := p.tree.Load()
	if tree == nil {
		return 0, unverified, fmt.Errorf("%w: no launched process to check the caller against", vmre.ErrPermissionDenied)
	}
	root := tree.root
	peer, err := netip.ParseAddrPort(call.PeerAddr)
	if err != nil {
		return 0, unverified, fmt.Errorf("%w: caller address %q: %w", vmre.ErrPermissionDenied, call.PeerAddr, err)
	}
	local, ok := localAddr(ctx)
	if !ok {
		return 0, unverified, fmt.Errorf("%w: server address unknown, cannot check the caller", vmre.ErrPermissionDenied)
	}
	inode, err := peercred.SocketInode(local, peer)
	if err != nil {
		return 0, unverified, fmt.Errorf("%w: find the caller's socket: %w", vmre.ErrPermissionDenied, err)
	}
	pid, err = tree.holder(inode)
	switch {
	case err == nil && pid != 0:
		p.log.Debug().Str("peer_addr", call.PeerAddr).Int("peer_pid", pid).Int("pid", root).Msg("handshake caller verified by peer")
		return pid, 0, nil
	case err == nil:
		return 0, server.RefusedForeignPeer, fmt.Errorf("%w: the caller's socket is not held by the launched plugin (pid %d) or its descendants", vmre.ErrPermissionDenied, root)
	}
	select {
	case p.peerSlots <- struct{}{}:
		defer func() { <-p.peerSlots }()
	case <-ctx.Done():
		return 0, unverified, fmt.Errorf("%w: check caller: %w", vmre.ErrPermissionDenied, ctx.Err())
	}
	owner, err := peercred.Lookup(local, peer, root)
	if err != nil {
		return 0, unverified, fmt.Errorf("%w: find the caller's process: %w", vmre.ErrPermissionDenied, err)
	}
	if !owner.InTree {
		return owner.Pid, server.RefusedForeignPeer, fmt.Errorf("%w: caller pid %d is not the launched plugin (pid %d) or its descendant", vmre.ErrPermissionDenied, owner.Pid, root)
	}
	p.log.Debug().Str("peer_addr", call.PeerAddr).Int("peer_pid", owner.Pid).Int("pid", root).Msg("handshake caller verified by peer")
	return owner.Pid, 0, nil
}

// localAddr is the server side of the caller's connection. net/http puts
// it in every request's context, and connect-go hands that context to the
// handler.
func localAddr(ctx context.Context) (netip.AddrPort, bool) {
	addr, ok := ctx.Value(http.LocalAddrContextKey).(net.Addr)
	if !ok {
		return netip.AddrPort{}, false
	}
	if tcp, ok := addr.(*net.TCPAddr); ok {
		return tcp.AddrPort(), true
	}
	ap, err := netip.ParseAddrPort(addr.String())
	return ap, err == nil
}

func (p *Policy) refused(call server.Call, peerPid int, why server.RefusalReason, err error) {
	p.refusals.Add(why)
	suppressed, ok := p.logLimit.allow(time.Now())
	if !ok {
		return
	}
	ev := p.log.Warn().Str("peer_addr", call.PeerAddr).Str("mode", p.mode.String()).Int("pid", int(p.pid.Load())).Stringer("reason", why)
	if peerPid != 0 {
		ev = ev.Int("peer_pid", peerPid)
	}
	if suppressed > 0 {
		ev = ev.Uint64("refused_unlogged", suppressed)
	}
	ev.Err(err).Msg("handshake refused")
}

// refusedLimiter lets through refusedLogBurst "handshake refused" lines
// per second: a flood of foreign callers must not turn into a flood of log
// lines. The first line after a quiet spell says how many were left out.
type refusedLimiter struct {
	mu         sync.Mutex
	second     int64 // unix second of the current window
	logged     int
	suppressed uint64
}

const refusedLogBurst = 10

// allow reports whether a line may be logged now and, if so, how many
// were left out before it.
func (l *refusedLimiter) allow(now time.Time) (uint64, bool) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if sec := now.Unix(); sec != l.second {
		l.second, l.logged = sec, 0
	}
	if l.logged >= refusedLogBurst {
		l.suppressed++
		return 0, false
	}
	l.logged++
	n := l.suppressed
	l.suppressed = 0
	return n, true
}
