package server_test

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"strconv"
	"strings"
	"testing"

	"connectrpc.com/connect"
	"github.com/vmre/vmre"
	"github.com/vmre/vmre/client"
	handshakev1 "github.com/vmre/vmre/gen/vmre/handshake/v1"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/emptypb"
)

// caller performs one Initialize against the engine at engineAddr in one
// protocol and returns its error in the vocabulary of that protocol's
// client.
type caller struct {
	name string
	// wantWire is what must reach the server's port.
	wantWire wire
	call     func(ctx context.Context, t *testing.T, engineAddr string, version uint32, vmAddr string) error
	// code extracts the status code from an error of call.
	code func(err error) connect.Code
	// isVMRE marks vmre's own client, whose errors wrap the root sentinels.
	isVMRE bool
}

func vmreClient(p client.Protocol) func(context.Context, *testing.T, string, uint32, string) error {
	return func(ctx context.Context, t *testing.T, engineAddr string, version uint32, vmAddr string) error {
		c := client.New(engineAddr, client.WithProtocol(p))
		t.Cleanup(c.Close)
		return c.Initialize(ctx, version, vmAddr)
	}
}

// grpcGoInitialize calls Initialize with a real grpc-go client, as plugins
// built against avalanchego or luxd do: no generated grpc code, just the
// method name and the runtimepb messages.
func grpcGoInitialize(ctx context.Context, t *testing.T, engineAddr string, version uint32, vmAddr string) error {
	conn, err := grpc.NewClient(engineAddr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatalf("grpc.NewClient: %v", err)
	}
	t.Cleanup(func() { _ = conn.Close() })
	req := &handshakev1.InitializeRequest{ProtocolVersion: version, Addr: vmAddr}
	return conn.Invoke(ctx, "/vm.runtime.Runtime/Initialize", req, &emptypb.Empty{})
}

// curlError is a Connect error as curl shows it: an HTTP status and a JSON
// body {"code":"...","message":"..."}.
type curlError struct {
	Status  int
	Code    string `json:"code"`
	Message string `json:"message"`
}

func (e *curlError) Error() string {
	return "HTTP " + strconv.Itoa(e.Status) + ": " + e.Code + ": " + e.Message
}

// parseCurlError decodes a Connect error response.
func parseCurlError(t *testing.T, status int, body string) *curlError {
	t.Helper()
	ce := &curlError{Status: status}
	if err := json.Unmarshal([]byte(body), ce); err != nil {
		t.Fatalf("HTTP %d with a body that is not a Connect error: %q: %v", status, body, err)
	}
	return ce
}

// curlInitialize posts JSON exactly as the curl line in the README does:
//
//	curl -H 'Content-Type: application/json' -d '{"protocolVersion":42,"addr":"127.0.0.1:50001"}' http://HOST:PORT/vm.runtime.Runtime/Initialize
func curlInitialize(ctx context.Context, t *testing.T, engineAddr string, version uint32, vmAddr string) error {
	body := `{"protocolVersion":` + strconv.FormatUint(uint64(version), 10) + `,"addr":"` + vmAddr + `"}`
	status, respBody := post(ctx, t, engineAddr, "application/json", body)
	if status != http.StatusOK {
		return parseCurlError(t, status, respBody)
	}
	if respBody != "{}" {
		t.Errorf("response body = %q, want {}", respBody)
	}
	return nil
}

// post sends one HTTP/1.1 POST to the Initialize procedure and returns the
// status and body.
func post(ctx context.Context, t *testing.T, engineAddr, contentType, body string) (int, string) {
	t.Helper()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost,
		"http://"+engineAddr+"/vm.runtime.Runtime/Initialize", strings.NewReader(body))
	if err != nil {
		t.Fatalf("new request: %v", err)
	}
	if contentType != "" {
		req.Header.Set("Content-Type", contentType)
	}
	transport := &http.Transport{}
	t.Cleanup(transport.CloseIdleConnections)
	resp, err := (&http.Client{Transport: transport}).Do(req)
	if err != nil {
		t.Fatalf("post: %v", err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("read body: %v", err)
	}
	return resp.StatusCode, string(b)
}

func grpcCode(err error) connect.Code { return connect.Code(status.Code(err)) }

// curlCode reads the code from a Connect JSON error body.
func curlCode(err error) connect.Code {
	var ce *curlError
	if !errors.As(err, &ce) {
		return connect.CodeUnknown
	}
	var code connect.Code
	if err := code.UnmarshalText([]byte(ce.Code)); err != nil {
		return connect.CodeUnknown
	}
	return code
}

// callers are all the ways a plugin, a tool or a person reaches the
// handshake endpoint.
var callers = []caller{
	{
		name:     "vmre client gRPC h2c",
		wantWire: wire{Proto: "HTTP/2.0", ContentType: "application/grpc"},
		call:     vmreClient(client.ProtocolGRPC),
		code:     connect.CodeOf,
		isVMRE:   true,
	},
	{
		name:     "vmre client gRPC-Web",
		wantWire: wire{Proto: "HTTP/1.1", ContentType: "application/grpc-web+proto"},
		call:     vmreClient(client.ProtocolGRPCWeb),
		code:     connect.CodeOf,
		isVMRE:   true,
	},
	{
		name:     "vmre client Connect JSON",
		wantWire: wire{Proto: "HTTP/1.1", ContentType: "application/json"},
		call:     vmreClient(client.ProtocolConnect),
		code:     connect.CodeOf,
		isVMRE:   true,
	},
	{
		name:     "grpc-go client",
		wantWire: wire{Proto: "HTTP/2.0", ContentType: "application/grpc"},
		call:     grpcGoInitialize,
		code:     grpcCode,
	},
	{
		name:     "curl JSON",
		wantWire: wire{Proto: "HTTP/1.1", ContentType: "application/json"},
		call:     curlInitialize,
		code:     curlCode,
	},
}

// TestHandshakeProtocols proves that one port completes the handshake for
// every kind of caller, over the protocol and HTTP version each really
// uses, and hands the Initializer exactly what the caller sent.
func TestHandshakeProtocols(t *testing.T) {
	t.Parallel()
	for _, c := range callers {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			engine := &testEngine{}
			seen := &wireLog{}
			engineAddr := startServer(t, engine, seen)

			vmAddr := "127.0.0.1:50001"
			if err := c.call(t.Context(), t, engineAddr, engineVersion, vmAddr); err != nil {
				t.Fatalf("Initialize: %v", err)
			}
			if got := seen.last(t); got != c.wantWire {
				t.Errorf("request on the wire = %+v, want %+v", got, c.wantWire)
			}
			engine.mu.Lock()
			defer engine.mu.Unlock()
			want := []call{{Version: engineVersion, Addr: vmAddr}}
			if len(engine.accepted) != 1 || engine.accepted[0] != want[0] {
				t.Errorf("Initializer got %+v, want %+v", engine.accepted, want)
			}
		})
	}
}

// TestErrorCodesAcrossProtocols proves that the server's refusals reach
// every kind of caller with the same status code and a message that names
// the problem, and that vmre's client turns them into the root sentinels.
func TestErrorCodesAcrossProtocols(t *testing.T) {
	t.Parallel()
	engine := &testEngine{}
	engineAddr := startServer(t, engine, nil)

	tests := []struct {
		name     string
		version  uint32
		vmAddr   string // "" means a fresh valid address
		twice    bool   // send the same request twice, judge the second
		wantCode connect.Code
		wantErr  error // for vmre's client, via errors.Is
		wantMsg  string
	}{
		{name: "empty addr", version: engineVersion, vmAddr: "-", wantCode: connect.CodeInvalidArgument,
			wantErr: vmre.ErrInvalidRequest, wantMsg: "addr is empty"},
		{name: "addr without port", version: engineVersion, vmAddr: "nohost", wantCode: connect.CodeInvalidArgument,
			wantErr: vmre.ErrInvalidRequest, wantMsg: `addr "nohost" is not host:port`},
		{name: "addr port out of range", version: engineVersion, vmAddr: "host:99999", wantCode: connect.CodeInvalidArgument,
			wantErr: vmre.ErrInvalidRequest, wantMsg: "no valid port"},
		{name: "zero version", version: 0, wantCode: connect.CodeInvalidArgument,
			wantErr: vmre.ErrInvalidRequest, wantMsg: "protocol_version is 0"},
		{name: "version mismatch", version: 41, wantCode: connect.CodeFailedPrecondition,
			wantErr: vmre.ErrProtocolVersionMismatch, wantMsg: "protocol version mismatch engine: 42 vm: 41"},
		{name: "second initialize", version: engineVersion, twice: true, wantCode: connect.CodeAlreadyExists,
			wantErr: vmre.ErrAlreadyInitialized, wantMsg: "already initialized"},
		{name: "oversized addr", version: engineVersion, vmAddr: strings.Repeat("h", 5000) + ":1",
			wantCode: connect.CodeResourceExhausted, wantErr: vmre.ErrHandshakeFailed, wantMsg: "larger than configured max"},
	}
	for _, c := range callers {
		for _, tt := range tests {
			t.Run(c.name+"/"+tt.name, func(t *testing.T) {
				t.Parallel()
				vmAddr := tt.vmAddr
				switch vmAddr {
				case "":
					vmAddr = nextVMAddr()
				case "-":
					vmAddr = ""
				}
				if tt.twice {
					if err := c.call(t.Context(), t, engineAddr, tt.version, vmAddr); err != nil {
						t.Fatalf("first Initialize: %v", err)
					}
				}
				err := c.call(t.Context(), t, engineAddr, tt.version, vmAddr)
				if err == nil {
					t.Fatal("Initialize succeeded, want an error")
				}
				if got := c.code(err); got != tt.wantCode {
					t.Errorf("code = %v, want %v (error: %v)", got, tt.wantCode, err)
				}
				if !strings.Contains(err.Error(), tt.wantMsg) {
					t.Errorf("error %q does not contain %q", err, tt.wantMsg)
				}
				if c.isVMRE && !errors.Is(err, tt.wantErr) {
					t.Errorf("errors.Is(%v, %v) = false", err, tt.wantErr)
				}
			})
		}
	}
}
