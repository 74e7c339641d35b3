//go:build linux

package subprocess

import (
	"context"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/vmre/vmre"
	"github.com/vmre/vmre/client"
	handshakev1 "github.com/vmre/vmre/gen/vmre/handshake/v1"
	"github.com/vmre/vmre/internal/h2raw"
	"github.com/vmre/vmre/internal/handshakeauth"
	"github.com/vmre/vmre/internal/token"
	"github.com/vmre/vmre/server"
	"golang.org/x/net/http2/hpack"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/types/known/emptypb"
)

// handshakePath serves a handshake one way and returns its address.
type handshakePath func(t *testing.T, hs *handshake) string

// servedPaths are the two ways a launch's handshake can be answered: by
// serveHandshake (h2unary, handing what it does not answer to the
// fallback) and by the fallback's net/http server alone.
var servedPaths = []struct {
	name  string
	serve handshakePath
}{
	{"h2unary", serveTestHandshake},
	{"net/http", func(t *testing.T, hs *handshake) string {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		var served net.Listener = ln
		if hs.auth != nil {
			served = hs.auth.Listener(ln)
		}
		srv := newFallbackServer(hs)
		done := make(chan struct{})
		go func() { defer close(done); _ = srv.Serve(served) }()
		t.Cleanup(func() { _ = srv.Close(); <-done })
		return ln.Addr().String()
	}},
}

// initializeMessage encodes an InitializeRequest, plus extra bytes.
func initializeMessage(version uint32, addr string, extra ...byte) []byte {
	var b []byte
	b = protowire.AppendTag(b, 1, protowire.VarintType)
	b = protowire.AppendVarint(b, uint64(version))
	b = protowire.AppendTag(b, 2, protowire.BytesType)
	b = protowire.AppendString(b, addr)
	return append(b, extra...)
}

func grpcFields(authority string, extra ...hpack.HeaderField) []hpack.HeaderField {
	return append([]hpack.HeaderField{
		{Name: ":method", Value: "POST"}, {Name: ":scheme", Value: "http"}, {Name: ":authority", Value: authority},
		{Name: ":path", Value: server.InitializeProcedure}, {Name: "content-type", Value: "application/grpc"},
		{Name: "te", Value: "trailers"},
	}, extra...)
}

func envelope(msg []byte) []byte {
	return append([]byte{0, byte(len(msg) >> 24), byte(len(msg) >> 16), byte(len(msg) >> 8), byte(len(msg))}, msg...)
}

// authCase returns a maker of the auth policies of a test case's
// launches, one per way of serving, alike: the same token, the same
// plugin pid (nil: mode none).
type authCase func(t *testing.T) func() (*handshakeauth.Policy, string)

func newPolicy(t *testing.T, mode handshakeauth.Mode, secret string, pid int) *handshakeauth.Policy {
	p, err := handshakeauth.New(handshakeauth.Config{Mode: mode, Token: secret})
	if err != nil {
		t.Fatal(err)
	}
	p.SetPid(pid)
	return p
}

func tokenAuth(t *testing.T) func() (*handshakeauth.Policy, string) {
	secret := token.New()
	return func() (*handshakeauth.Policy, string) {
		return newPolicy(t, handshakeauth.ModeToken, secret, 1), secret
	}
}

// peerAuth admits callers whose socket this process holds: the test's.
func peerAuth(t *testing.T) func() (*handshakeauth.Policy, string) {
	return func() (*handshakeauth.Policy, string) {
		return newPolicy(t, handshakeauth.ModePeer, "", os.Getpid()), ""
	}
}

// foreignPeerAuth admits only a sleeping child's sockets.
func foreignPeerAuth(t *testing.T) func() (*handshakeauth.Policy, string) {
	cmd := exec.Command("sleep", "60")
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cmd.Process.Kill(); _ = cmd.Wait() })
	return func() (*handshakeauth.Policy, string) {
		return newPolicy(t, handshakeauth.ModePeer, "", cmd.Process.Pid), ""
	}
}

// serveCase serves a new launch's handshake (version 42) with serve,
// decided already if decided, with an auth policy from policy (none if
// it is nil); it returns the address and the token the policy admits.
func serveCase(t *testing.T, serve handshakePath, policy func() (*handshakeauth.Policy, string), decided bool) (addr, tok string) {
	var auth *handshakeauth.Policy
	if policy != nil {
		auth, tok = policy()
	}
	hs := newHandshake([]uint32{42}, auth)
	addr = serve(t, hs)
	if decided {
		hs.decided.Store(true)
	}
	return addr, tok
}

// TestHandshakePathsAnswerAlike sends the same requests over HTTP/2 to
// the two ways of serving a handshake and compares every frame of the
// answers: the same SETTINGS, then on the call's stream the same frames
// (type, flags, DATA bytes, header fields in order, the date's value
// aside). h2unary answers the first group itself (one SETTINGS frame
// reaches the client) and hands the second to net/http (two: its own,
// then net/http's).
func TestHandshakePathsAnswerAlike(t *testing.T) {
	t.Parallel()
	valid := envelope(initializeMessage(42, "127.0.0.1:9000"))
	cases := []struct {
		name       string
		auth       authCase
		decided    bool // a valid call on another connection decides the handshake first
		fields     func(authority, token string) []hpack.HeaderField
		body       []byte
		handedOver bool
	}{
		{name: "ok", body: valid},
		{name: "ok, application/grpc+proto", body: valid, fields: func(a, _ string) []hpack.HeaderField {
			f := grpcFields(a)
			f[4].Value = "application/grpc+proto"
			return f
		}},
		{name: "ok, unknown field", body: envelope(initializeMessage(42, "127.0.0.1:9000", 0xf8, 0x06, 0x01))},
		{name: "ok, grpc-timeout and user-agent", body: valid, fields: func(a, _ string) []hpack.HeaderField {
			return grpcFields(a, hpack.HeaderField{Name: "grpc-timeout", Value: "4999912u"}, hpack.HeaderField{Name: "user-agent", Value: "grpc-go/1.85.0"})
		}},
		{name: "mismatch, grpc-timeout", body: envelope(initializeMessage(41, "127.0.0.1:9000")), fields: func(a, _ string) []hpack.HeaderField {
			return grpcFields(a, hpack.HeaderField{Name: "grpc-timeout", Value: "5S"})
		}},
		{name: "short grpc-timeout", body: valid, fields: func(a, _ string) []hpack.HeaderField {
			return grpcFields(a, hpack.HeaderField{Name: "grpc-timeout", Value: "999m"})
		}},
		{name: "bad grpc-timeout", body: valid, fields: func(a, _ string) []hpack.HeaderField {
			return grpcFields(a, hpack.HeaderField{Name: "grpc-timeout", Value: "5x"})
		}},
		{name: "mismatch", body: envelope(initializeMessage(41, "127.0.0.1:9000"))},
		{name: "already initialized", decided: true, body: valid},
		{name: "bad message", body: envelope([]byte{0x0a, 0xff})},
		{name: "invalid addr", body: envelope(initializeMessage(42, "no port"))},
		{name: "version unset", body: envelope(initializeMessage(0, "127.0.0.1:9000"))},
		{name: "token", auth: tokenAuth, body: valid, fields: func(a, tok string) []hpack.HeaderField {
			return grpcFields(a, hpack.HeaderField{Name: "vmre-handshake-token", Value: tok})
		}},
		{name: "wrong token", auth: tokenAuth, body: valid, fields: func(a, _ string) []hpack.HeaderField {
			return grpcFields(a, hpack.HeaderField{Name: "vmre-handshake-token", Value: token.New()})
		}},
		{name: "no token", auth: tokenAuth, body: valid},
		{name: "peer", auth: peerAuth, body: valid},
		{name: "foreign peer", auth: foreignPeerAuth, body: valid},
		{name: "message too large", body: envelope(make([]byte, server.MaxRequestBytes+1)), handedOver: true},
		{name: "two messages", body: append(slices.Clone(valid), valid...), handedOver: true},
		{name: "compressed", body: append([]byte{1}, valid[1:]...), handedOver: true},
		{name: "no body", body: nil, handedOver: true},
		{name: "GET", body: valid, handedOver: true, fields: func(a, _ string) []hpack.HeaderField {
			f := grpcFields(a)
			f[0].Value = "GET"
			return f
		}},
		{name: "other path", body: valid, handedOver: true, fields: func(a, _ string) []hpack.HeaderField {
			f := grpcFields(a)
			f[3].Value = "/vm.runtime.Runtime/Other"
			return f
		}},
		{name: "connect proto", body: initializeMessage(42, "127.0.0.1:9000"), handedOver: true, fields: func(a, _ string) []hpack.HeaderField {
			f := grpcFields(a)
			f[4].Value = "application/proto"
			return f
		}},
		{name: "gRPC-Web", body: valid, handedOver: true, fields: func(a, _ string) []hpack.HeaderField {
			f := grpcFields(a)
			f[4].Value = "application/grpc-web"
			return f
		}},
		{name: "gzip", body: valid, fields: func(a, _ string) []hpack.HeaderField {
			return grpcFields(a, hpack.HeaderField{Name: "grpc-encoding", Value: "gzip"})
		}},
		{name: "content-length", body: valid, handedOver: true, fields: func(a, _ string) []hpack.HeaderField {
			return grpcFields(a, hpack.HeaderField{Name: "content-length", Value: "25"})
		}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			var answers [2][]h2raw.Event
			var policy func() (*handshakeauth.Policy, string)
			if tc.auth != nil {
				policy = tc.auth(t)
			}
			for i, path := range servedPaths {
				addr, tok := serveCase(t, path.serve, policy, tc.decided)
				fields := grpcFields(addr)
				if tc.fields != nil {
					fields = tc.fields(addr, tok)
				}
				answers[i] = exchange(t, addr, fields, tc.body)
			}
			fast, slow := answers[0], answers[1]
			settings := countKind(fast, "settings")
			if want := map[bool]int{false: 1, true: 2}[tc.handedOver]; settings != want {
				t.Errorf("h2unary's client got %d SETTINGS frames, want %d (handed over: %v)", settings, want, tc.handedOver)
			}
			if !slices.EqualFunc(onlyKind(fast, "settings")[:1], onlyKind(slow, "settings"), sameEvent) {
				t.Errorf("SETTINGS differ:\nh2unary:  %+v\nnet/http: %+v", fast[0].Settings, onlyKind(slow, "settings"))
			}
			fast, slow = onStream(fast), onStream(slow)
			if len(fast) == 0 || !slices.EqualFunc(fast, slow, sameEvent) {
				t.Errorf("answers differ:\nh2unary:  %s\nnet/http: %s", eventsString(fast), eventsString(slow))
			}
		})
	}
}

// exchange opens a connection to addr, sends one request and returns
// what the server sent until that request's stream ended.
func exchange(t *testing.T, addr string, fields []hpack.HeaderField, body []byte) []h2raw.Event {
	t.Helper()
	c, err := h2raw.Dial(addr, 1<<20, 64)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	id, err := c.Open(fields, body)
	if err != nil {
		t.Fatal(err)
	}
	var evs []h2raw.Event
	timeout := time.After(time.Minute)
	for {
		select {
		case ev, ok := <-c.Events():
			if !ok {
				return evs
			}
			evs = append(evs, ev)
			if ev.Stream == id && (ev.EndStream || ev.Kind == "rst") || ev.Kind == "goaway" {
				return evs
			}
		case <-timeout:
			t.Fatalf("no end of stream %d: %s", id, eventsString(evs))
		}
	}
}

func countKind(evs []h2raw.Event, kind string) int { return len(onlyKind(evs, kind)) }

func onlyKind(evs []h2raw.Event, kind string) []h2raw.Event {
	var out []h2raw.Event
	for _, ev := range evs {
		if ev.Kind == kind {
			out = append(out, ev)
		}
	}
	return out
}

func onStream(evs []h2raw.Event) []h2raw.Event {
	var out []h2raw.Event
	for _, ev := range evs {
		if ev.Stream != 0 {
			out = append(out, ev)
		}
	}
	return out
}

// sameEvent compares two frames' events; a date field matches any other
// date field whose value is an HTTP date.
func sameEvent(a, b h2raw.Event) bool {
	if a.Stream != b.Stream || a.Kind != b.Kind || a.EndStream != b.EndStream || a.Code != b.Code ||
		string(a.Data) != string(b.Data) || !slices.Equal(a.Settings, b.Settings) {
		return false
	}
	return slices.EqualFunc(a.Fields, b.Fields, func(x, y hpack.HeaderField) bool {
		if x.Name == "date" && y.Name == "date" {
			_, ex := http.ParseTime(x.Value)
			_, ey := http.ParseTime(y.Value)
			return ex == nil && ey == nil
		}
		return x == y
	})
}

func eventsString(evs []h2raw.Event) string {
	var s string
	for _, ev := range evs {
		s += "\n\t" + ev.Kind
		if ev.EndStream {
			s += " END_STREAM"
		}
		for _, f := range ev.Fields {
			s += " " + f.Name + "=" + f.Value
		}
		if ev.Data != nil {
			s += " data=" + string(ev.Data)
		}
	}
	return s
}

// TestHandshakePathsAnswerGRPCAlike calls Initialize with a real grpc-go
// client through both ways of serving and compares what the client sees:
// the status, its message, the headers and the trailers; and the error
// vmre's client returns on a launch of its own.
func TestHandshakePathsAnswerGRPCAlike(t *testing.T) {
	t.Parallel()
	cases := []struct {
		name    string
		version uint32
		addr    string
		decided bool
		auth    authCase
		useTok  bool
		want    codes.Code
	}{
		{name: "ok", version: 42, addr: "127.0.0.1:9000", want: codes.OK},
		{name: "mismatch", version: 41, addr: "127.0.0.1:9000", want: codes.FailedPrecondition},
		{name: "already initialized", version: 42, addr: "127.0.0.1:9000", decided: true, want: codes.AlreadyExists},
		{name: "invalid addr", version: 42, addr: "nope", want: codes.InvalidArgument},
		{name: "token", version: 42, addr: "127.0.0.1:9000", auth: tokenAuth, useTok: true, want: codes.OK},
		{name: "no token", version: 42, addr: "127.0.0.1:9000", auth: tokenAuth, want: codes.Unauthenticated},
		{name: "peer", version: 42, addr: "127.0.0.1:9000", auth: peerAuth, want: codes.OK},
		{name: "foreign peer", version: 42, addr: "127.0.0.1:9000", auth: foreignPeerAuth, want: codes.PermissionDenied},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			type seen struct {
				code             codes.Code
				msg              string
				header, trailers metadata.MD
				vmreErr          string // what vmre's client returned, on a handshake of its own
			}
			var got [2]seen
			var policy func() (*handshakeauth.Policy, string)
			if tc.auth != nil {
				policy = tc.auth(t)
			}
			for i, path := range servedPaths {
				addr, tok := serveCase(t, path.serve, policy, tc.decided)
				conn, err := grpc.NewClient(addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
				if err != nil {
					t.Fatal(err)
				}
				// As avalanchego's plugins call it: with a deadline, which
				// grpc-go sends as grpc-timeout.
				ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
				defer cancel()
				if tc.useTok {
					ctx = metadata.AppendToOutgoingContext(ctx, vmre.HandshakeTokenHeader, tok)
				}
				req := &handshakev1.InitializeRequest{ProtocolVersion: tc.version, Addr: tc.addr}
				var header, trailers metadata.MD
				err = conn.Invoke(ctx, server.InitializeProcedure, req, &emptypb.Empty{}, grpc.Header(&header), grpc.Trailer(&trailers))
				_ = conn.Close()
				st, _ := status.FromError(err)
				delete(header, "date")
				got[i] = seen{code: st.Code(), msg: st.Message(), header: header, trailers: trailers}

				addr, tok = serveCase(t, path.serve, policy, tc.decided)
				var opts []client.Option
				if tc.useTok {
					opts = append(opts, client.WithToken(tok))
				}
				vc := client.New(addr, opts...)
				if err := vc.Initialize(t.Context(), tc.version, tc.addr); err != nil {
					got[i].vmreErr = err.Error()
				}
				vc.Close()
			}
			if got[0].code != tc.want {
				t.Errorf("h2unary: %v %q, want %v", got[0].code, got[0].msg, tc.want)
			}
			if got[0].code != got[1].code || got[0].msg != got[1].msg || !mdEqual(got[0].header, got[1].header) ||
				!mdEqual(got[0].trailers, got[1].trailers) || got[0].vmreErr != got[1].vmreErr {
				t.Errorf("grpc-go saw different answers:\nh2unary:  %+v\nnet/http: %+v", got[0], got[1])
			}
		})
	}
}

func mdEqual(a, b metadata.MD) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		if !slices.Equal(v, b[k]) {
			return false
		}
	}
	return true
}

// TestHandshakePathsAnswerHTTP1Alike: HTTP/1.1 calls (Connect JSON as
// curl sends it, gRPC-Web, a wrong content type), which h2unary hands
// over at their first bytes, get net/http's own answers.
func TestHandshakePathsAnswerHTTP1Alike(t *testing.T) {
	t.Parallel()
	cases := []struct {
		name, contentType, body string
		wantStatus              int
	}{
		{"connect json", "application/json", `{"protocolVersion":42,"addr":"127.0.0.1:9000"}`, http.StatusOK},
		{"connect json, mismatch", "application/json", `{"protocolVersion":41,"addr":"127.0.0.1:9000"}`, http.StatusBadRequest},
		{"grpc-web", "application/grpc-web+proto", string(envelope(initializeMessage(42, "127.0.0.1:9000"))), http.StatusOK},
		{"form", "application/x-www-form-urlencoded", "a=b", http.StatusUnsupportedMediaType},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			type seen struct {
				status      int
				contentType string
				body        string
			}
			var got [2]seen
			for i, path := range servedPaths {
				addr := path.serve(t, newHandshake([]uint32{42}, nil))
				res, err := http.Post("http://"+addr+server.InitializeProcedure, tc.contentType, strings.NewReader(tc.body))
				if err != nil {
					t.Fatal(err)
				}
				b, _ := io.ReadAll(res.Body)
				_ = res.Body.Close()
				got[i] = seen{res.StatusCode, res.Header.Get("Content-Type"), string(b)}
			}
			if got[0].status != tc.wantStatus || got[0] != got[1] {
				t.Errorf("h2unary: %+v, net/http: %+v, want status %d", got[0], got[1], tc.wantStatus)
			}
		})
	}
}

func TestGRPCPercentEncode(t *testing.T) {
	t.Parallel()
	for in, want := range map[string]string{
		"":                       "",
		"plain text: a-z ~":      "plain text: a-z ~",
		"100%":                   "100%25",
		"line\nbreak\tand é\x7f": "line%0Abreak%09and %C3%A9%7F",
	} {
		if got := grpcPercentEncode(in); got != want {
			t.Errorf("grpcPercentEncode(%q) = %q, want %q", in, got, want)
		}
	}
}

// freshProcessEnv marks a run of this test binary that
// TestGRPCInitializeBuildsNoSharedHandler started to look at a process's
// first handshake.
const freshProcessEnv = "VMRE_TEST_FRESH_PROCESS"

// TestGRPCInitializeBuildsNoSharedHandler: a process whose handshakes are
// all gRPC Initialize calls over h2c, as every grpc-go plugin sends them,
// never builds the shared Connect handler (its descriptors, mux and
// guards): h2unary answers them. It runs itself again in a new process,
// since any earlier test of this one may have built the handler.
func TestGRPCInitializeBuildsNoSharedHandler(t *testing.T) {
	if os.Getenv(freshProcessEnv) == "" {
		t.Parallel()
		exe, err := os.Executable()
		if err != nil {
			t.Fatal(err)
		}
		cmd := exec.CommandContext(t.Context(), exe, "-test.run=^TestGRPCInitializeBuildsNoSharedHandler$", "-test.v")
		cmd.Env = append(os.Environ(), freshProcessEnv+"=1")
		out, err := cmd.CombinedOutput()
		if err != nil || !strings.Contains(string(out), "--- PASS: TestGRPCInitializeBuildsNoSharedHandler") {
			t.Fatalf("in a new process: %v\n%s", err, out)
		}
		return
	}
	hs := newHandshake([]uint32{42}, nil)
	conn, err := grpc.NewClient(serveTestHandshake(t, hs), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
	defer cancel()
	req := &handshakev1.InitializeRequest{ProtocolVersion: 42, Addr: "127.0.0.1:9000"}
	if err := conn.Invoke(ctx, server.InitializeProcedure, req, &emptypb.Empty{}); err != nil {
		t.Fatalf("Initialize: %v", err)
	}
	if handshakeHandler.h != nil {
		t.Error("the shared handler was built for a gRPC Initialize that h2unary answers")
	}
}
