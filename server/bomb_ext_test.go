package server_test

import (
	"errors"
	"net/http"
	"strings"
	"testing"

	"connectrpc.com/connect"
	handshakev1 "github.com/vmre/vmre/gen/vmre/handshake/v1"
)

// TestHandshakeRefusesCompression sends a gzip Initialize body of a few KiB
// that inflates to 8 MiB. The handshake port serves callers before they are
// authorised and no plugin compresses its handshake, so gzip is refused
// outright (unimplemented), with nothing inflated; connect-go's size cap alone
// would inflate all of it first and report its size (resource_exhausted).
func TestHandshakeRefusesCompression(t *testing.T) {
	t.Parallel()
	addr := startServer(t, nopInitializer{}, nil)
	for _, proto := range []struct {
		name string
		opt  connect.ClientOption
	}{{"grpc", connect.WithGRPC()}, {"connect", connect.WithProtoJSON()}} {
		t.Run(proto.name, func(t *testing.T) {
			t.Parallel()
			c := newRuntimeClient(http.DefaultClient, "http://"+addr, proto.opt, connect.WithSendGzip())
			_, err := c.Initialize(t.Context(), &handshakev1.InitializeRequest{ProtocolVersion: 42, Addr: strings.Repeat("1", 8<<20)})
			var ce *connect.Error
			if !errors.As(err, &ce) || ce.Code() != connect.CodeUnimplemented {
				t.Fatalf("err = %v, want unimplemented (gzip refused)", err)
			}
		})
	}
}
