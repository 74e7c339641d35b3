// Package api serves a vmre engine's API port: one [http.Handler] that
// answers the vmre.v1.RuntimeService (list, get, watch, tail output, stop,
// restart), grpc.health.v1, gRPC server reflection (v1 and v1alpha, so
// grpcurl and buf curl work without proto files) and the embedded browser
// dashboard at "/".
//
// grpc.health.v1 Check answers for the engine ("" and
// vmre.v1.RuntimeService) and for each runtime by its name: SERVING while a
// runtime of that name is running or attached, NOT_SERVING in every other
// state, NOT_FOUND for a name no runtime has. Kubernetes' grpc probes and
// Nomad's grpc checks can so target one VM. Watch answers unimplemented
// (connectrpc.com/grpchealth serves Check only, which the health protocol
// allows).
//
// Every RPC speaks gRPC, gRPC-Web and Connect (JSON or binary) over HTTP/1.1
// and, with a server from server.NewHTTPServer, cleartext HTTP/2.
//
// Security model: reads need no credentials, since the port binds loopback
// by default. StopRuntime, RestartRuntime and ReloadConfig need the engine's API token as
// "Authorization: Bearer <token>" and fail with unauthenticated without it.
// Browsers may call the API only from the dashboard's own origin unless
// [Config.CORSOrigins] names more; a foreign origin gets no CORS headers at
// all. The dashboard is served with a strict Content-Security-Policy (it
// talks to nothing but its own origin) and may not be framed.
//
// Configuration: the handler is long-lived, so it takes one documented
// [Config] struct whose zero fields mean the documented defaults.
package api

import (
	"cmp"
	"context"
	"fmt"
	"io/fs"
	"net"
	"net/http"
	"net/url"
	"path"
	"runtime/debug"
	"strings"
	"time"

	"connectrpc.com/connect"
	connectcors "connectrpc.com/cors"
	"connectrpc.com/grpchealth"
	"github.com/rs/cors"
	"github.com/rs/zerolog"
	"github.com/vmre/vmre"
	"github.com/vmre/vmre/config"
	"github.com/vmre/vmre/engine"
	vmrev1 "github.com/vmre/vmre/gen/vmre/v1"
	"github.com/vmre/vmre/gen/vmre/v1/vmrev1connect"
	"github.com/vmre/vmre/internal/reflection"
	"github.com/vmre/vmre/internal/requestguard"
	"github.com/vmre/vmre/internal/vmruntime"
	"github.com/vmre/vmre/web"
	"google.golang.org/protobuf/reflect/protoreflect"
)

// MaxRequestBytes caps a request message; every request of the service is
// a few dozen bytes.
const MaxRequestBytes = 64 << 10

// compressMinBytes is the smallest response message the API compresses.
const compressMinBytes = 4 << 10

// Config configures [New].
type Config struct {
	// Token is the bearer token StopRuntime, RestartRuntime and
	// ReloadConfig require.
	// Token or TokenFile is required; see [NewTokenFile] and
	// [ReadTokenFile].
	Token string
	// TokenFile, if set instead of Token, names a file holding the token
	// (mode 0600, as [ReadTokenFile] wants it). It is stat'ed at every
	// guarded call and re-read when it changes: a rotated token works at
	// once and the old one stops working. While the file is unreadable or
	// invalid, every guarded call is refused.
	TokenFile string
	// CORSOrigins lists the browser origins besides the dashboard's own
	// that may call the API ("http://localhost:3000"). Each must be a bare
	// scheme://host[:port]; "*" is refused. Empty means same origin only.
	CORSOrigins []string
	// Dashboard is the file tree served at "/"; default web.Dist().
	Dashboard fs.FS
	// AllowedHosts, if not empty, lists the host names (without port)
	// requests must address in their Host header (:authority in HTTP/2);
	// others get 403. An API bound to loopback should allow only loopback
	// names (see [LoopbackHosts]): a web page that rebinds its own DNS name
	// to 127.0.0.1 is then still refused, though the browser thinks it is
	// same-origin.
	AllowedHosts []string
	// Log receives request-independent events. Default: nothing.
	Log zerolog.Logger
	// Reloader, if set, serves ReloadConfig; a [*config.Runner] is one.
	// Nil: ReloadConfig answers failed_precondition (no file to reload).
	Reloader Reloader
	// MaxStreams bounds the WatchRuntimes and TailOutput streams served at
	// once, across all connections; MaxStreamsPerConn bounds them per
	// connection. A stream beyond either is refused with
	// resource_exhausted before its request is read. Each stream holds
	// memory while its client is slow to read (a message being written, a
	// follower's backlog), so these bound what clients can make the
	// engine hold. Zero means [DefaultMaxStreams] and
	// [DefaultMaxStreamsPerConn].
	MaxStreams        int
	MaxStreamsPerConn int
	// MaxCalls bounds the calls served at once besides those streams:
	// unary calls, reflection streams, dashboard files, metrics. Each holds
	// memory while its client does not read its answer. At the cap a new
	// call ends the one that has waited the longest for its client to
	// accept a write; when none is waiting it is refused with
	// resource_exhausted, except health checks and calls with the token,
	// which have a reserve of 32 more. Zero means [DefaultMaxCalls].
	MaxCalls int
	// SendTimeout bounds how long any response on the port (a stream's
	// message, a unary answer, a dashboard file) waits for the client to
	// accept its next 16 KiB: past it the call is ended (an HTTP/2 stream
	// is reset), releasing what it held. Zero means [DefaultSendTimeout].
	SendTimeout time.Duration
	// LogLostBytes, if set, is read at each scrape for
	// vmre_log_lost_bytes_total: the bytes of the engine's own log that
	// its output did not take (a closed stderr, a full disk), events lost.
	// [github.com/vmre/vmre/logsink.Writer.LostBytes] is one. Nil: the
	// family is left out.
	LogLostBytes func() uint64
	// Version is the engine version the watch stream reports (the
	// dashboard shows it). Default: the version of the vmre module in the
	// binary's build information, "(devel)" for a build from a source tree.
	Version string
}

// buildVersion is the version of the vmre module this binary was built
// with: the main module's when the binary is vmre itself, the dependency's
// when a program embeds vmre, or "(devel)".
func buildVersion() string {
	const module = "github.com/vmre/vmre"
	info, ok := debug.ReadBuildInfo()
	if !ok {
		return "(devel)"
	}
	for _, m := range append([]*debug.Module{&info.Main}, info.Deps...) {
		if m.Path == module && m.Version != "" {
			return m.Version
		}
	}
	return "(devel)"
}

// Reloader re-reads an engine's configuration file and applies it (see
// [config.Runner.Reload]).
type Reloader interface {
	Reload(ctx context.Context) (config.Plan, error)
}

// LoopbackHosts returns the host names that address the loopback interface:
// "localhost", "127.0.0.1" and "::1".
func LoopbackHosts() []string { return []string{"localhost", "127.0.0.1", "::1"} }

// Handler is the API port's handler. It is safe for concurrent use.
type Handler struct {
	handler http.Handler
	health  *healthChecker
	calls   *callLimiter
}

// New returns the API port's handler for eng.
func New(eng *engine.Engine, cfg Config) (*Handler, error) {
	tokens, err := newTokenSource(cfg.Token, cfg.TokenFile, cfg.Log)
	if err != nil {
		return nil, err
	}
	if cfg.MaxStreams < 0 || cfg.MaxStreamsPerConn < 0 || cfg.MaxCalls < 0 || cfg.SendTimeout < 0 {
		return nil, fmt.Errorf("%w: api call and stream limits and send timeout must not be negative", vmre.ErrInvalidConfig)
	}
	maxStreams := cmp.Or(cfg.MaxStreams, DefaultMaxStreams)
	maxStreamsPerConn := cmp.Or(cfg.MaxStreamsPerConn, DefaultMaxStreamsPerConn)
	sendTimeout := cmp.Or(cfg.SendTimeout, DefaultSendTimeout)
	origins, err := validateOrigins(cfg.CORSOrigins)
	if err != nil {
		return nil, err
	}
	dashboard := cfg.Dashboard
	if dashboard == nil {
		dashboard = web.Dist()
	}

	mux := http.NewServeMux()
	version := cfg.Version
	if version == "" {
		version = buildVersion()
	}
	shared := newSharedChanges(engineInfo{instanceID: eng.InstanceID(), started: eng.StartedAt(), version: version})
	streams := new(streamGauges)
	path, service := vmrev1connect.NewRuntimeServiceHandler(
		&service{engine: eng, shared: shared, reloader: cfg.Reloader, tails: &byteBudget{max: maxTailBytes}, streams: streams},
		connect.WithCodec(protoCodec{shared: shared}),
		connect.WithInterceptors(newAuthInterceptor(tokens), newStreamLimiter(maxStreams, maxStreamsPerConn).interceptor()),
		connect.WithReadMaxBytes(MaxRequestBytes),
		requestguard.BoundedGzip(MaxRequestBytes),
		// Most messages (a watch change, an output line) are a few hundred
		// bytes: gzipping each one for each watcher cost more CPU than it
		// saved on a loopback or LAN link, and delayed delivery to 1,000
		// watchers (BENCHMARKS.md). Large snapshots are still compressed.
		connect.WithCompressMinBytes(compressMinBytes),
	)
	// Readable 415s for curl without a Content-Type, and bodies bounded
	// before anything else runs (every request here is one message, and
	// the reads need no token).
	service = requestguard.Wrap(service, MaxRequestBytes, procedures(vmrev1.File_vmre_v1_runtime_service_proto.Services().ByName("RuntimeService"))...)
	mux.Handle(path, withFlushBatching(service, vmrev1connect.RuntimeServiceWatchRuntimesProcedure))
	// Health and reflection need no token either: the same bounds. A
	// reflection stream carries many messages, so only each one is capped.
	limit := connect.WithHandlerOptions(connect.WithReadMaxBytes(MaxRequestBytes), requestguard.BoundedGzip(MaxRequestBytes))
	health := &healthChecker{eng: eng}
	healthPath, healthHandler := grpchealth.NewHandler(health, limit)
	mux.Handle(healthPath, requestguard.Wrap(healthHandler, MaxRequestBytes,
		"/"+grpchealth.HealthV1ServiceName+"/Check", "/"+grpchealth.HealthV1ServiceName+"/Watch"))
	// Reflection lists what this port serves, and also describes the
	// handshake contract (vm.runtime.Runtime), which plugins call on their
	// engine's handshake port, so that grpcurl can show it here too.
	reflector := reflection.New([]string{
		vmrev1connect.RuntimeServiceName,
		grpchealth.HealthV1ServiceName,
		reflection.ServiceV1,
		reflection.ServiceV1Alpha,
	}, vmruntime.Registry{}, reflection.Health{})
	mux.Handle(reflector.HandlerV1(limit))
	mux.Handle(reflector.HandlerV1Alpha(limit))
	// Metrics need no token, like health: they describe, never act.
	// Every response, not only the streams': a client that never reads
	// would otherwise hold any handler and its answer.
	calls := newCallLimiter(cmp.Or(cfg.MaxCalls, DefaultMaxCalls), sendTimeout, tokens, cfg.Log,
		vmrev1connect.RuntimeServiceWatchRuntimesProcedure, vmrev1connect.RuntimeServiceTailOutputProcedure)
	mux.Handle("GET "+MetricsPath, newMetrics(eng, streams, calls, cfg.LogLostBytes).handler())
	mux.Handle("/", dashboardHandler(dashboard))
	return &Handler{handler: withHostCheck(withCORS(calls.wrap(mux), origins), cfg.AllowedHosts), health: health, calls: calls}, nil
}

// ServeHTTP implements [http.Handler].
func (h *Handler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	h.handler.ServeHTTP(w, r)
}

// LongestWaitingPeer returns the client address ([http.Request.RemoteAddr],
// one per connection) of the call in flight that has waited the longest
// for its client, to accept a part of its answer or to send its request,
// and since when; ok is false when no call waits. A connection limiter at
// its cap with every connection busy closes that connection (see
// connlimit.Listener.EvictBusy). Safe for concurrent use.
func (h *Handler) LongestWaitingPeer() (addr string, since time.Time, ok bool) {
	return h.calls.longestWaitingPeer()
}

// SetServing sets what grpc.health.v1 reports for the whole server ("")
// and for vmre.v1.RuntimeService; both are SERVING until it is called. A
// server about to shut down reports NOT_SERVING so that load balancers and
// probes stop sending work. Each runtime's own service name follows its
// state instead (see the package documentation). Safe for concurrent use.
func (h *Handler) SetServing(serving bool) {
	h.health.notServing.Store(!serving)
}

func validateOrigins(origins []string) ([]string, error) {
	out := make([]string, 0, len(origins))
	for _, o := range origins {
		if o == "*" {
			return nil, fmt.Errorf("%w: cors origin \"*\" would let any web page drive the engine; list origins explicitly", vmre.ErrInvalidConfig)
		}
		u, err := url.Parse(o)
		if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" ||
			(u.Path != "" && u.Path != "/") || u.RawQuery != "" || u.Fragment != "" || u.User != nil {
			return nil, fmt.Errorf("%w: cors origin %q, want scheme://host[:port]", vmre.ErrInvalidConfig, o)
		}
		// Browsers leave a scheme's default port out of Origin, so
		// "http://localhost:80" must be matched as "http://localhost".
		host := u.Host
		if port := u.Port(); (u.Scheme == "http" && port == "80") || (u.Scheme == "https" && port == "443") {
			host = strings.TrimSuffix(host, ":"+port)
		}
		out = append(out, u.Scheme+"://"+host)
	}
	return out, nil
}

// withCORS answers cross-origin requests from the allowed origins only. With
// none allowed it adds nothing: the dashboard is same-origin and needs no
// CORS, and a foreign page gets no CORS headers, so the browser refuses to
// let it read answers or send non-simple requests (every RPC is one).
func withCORS(h http.Handler, origins []string) http.Handler {
	if len(origins) == 0 {
		return h
	}
	return cors.New(cors.Options{
		AllowedOrigins: origins,
		AllowedMethods: connectcors.AllowedMethods(),
		AllowedHeaders: append(connectcors.AllowedHeaders(), "Authorization"),
		ExposedHeaders: connectcors.ExposedHeaders(),
		MaxAge:         7200,
	}).Handler(h)
}

// withHostCheck refuses requests whose Host is not in hosts (all pass if
// hosts is empty): the defence against DNS rebinding for a loopback API.
func withHostCheck(h http.Handler, hosts []string) http.Handler {
	if len(hosts) == 0 {
		return h
	}
	allowed := make(map[string]bool, len(hosts))
	for _, name := range hosts {
		allowed[strings.ToLower(strings.Trim(name, "[]"))] = true
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		host := r.Host
		if name, _, err := net.SplitHostPort(host); err == nil {
			host = name
		}
		if !allowed[strings.ToLower(strings.Trim(host, "[]"))] {
			http.Error(w, "host not allowed: this engine's API answers only to "+strings.Join(hosts, ", "), http.StatusForbidden)
			return
		}
		h.ServeHTTP(w, r)
	})
}

// contentSecurityPolicy keeps the dashboard to its own origin: no CDN, no
// third-party requests, no framing.
const contentSecurityPolicy = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; " +
	"connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"

func dashboardHandler(files fs.FS) http.Handler {
	fileServer := http.FileServerFS(files)
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method != http.MethodGet && r.Method != http.MethodHead {
			w.Header().Set("Allow", "GET, HEAD")
			http.Error(w, "method not allowed", http.StatusMethodNotAllowed)
			return
		}
		// A name fs.FS cannot hold (invalid UTF-8, say) makes the file
		// server answer 500; it is the client's error.
		if name := strings.TrimPrefix(path.Clean(r.URL.Path), "/"); name != "" && !fs.ValidPath(name) {
			http.Error(w, "bad path", http.StatusBadRequest)
			return
		}
		h := w.Header()
		h.Set("Content-Security-Policy", contentSecurityPolicy)
		h.Set("X-Content-Type-Options", "nosniff")
		h.Set("X-Frame-Options", "DENY")
		h.Set("Referrer-Policy", "no-referrer")
		// The bundle changes with the binary; let browsers revalidate.
		h.Set("Cache-Control", "no-cache")
		fileServer.ServeHTTP(w, r)
	})
}

// procedures lists svc's procedure paths, so that a method added to the
// service is guarded too.
func procedures(svc protoreflect.ServiceDescriptor) []string {
	methods := svc.Methods()
	out := make([]string, methods.Len())
	for i := range out {
		out[i] = "/" + string(svc.FullName()) + "/" + string(methods.Get(i).Name())
	}
	return out
}
