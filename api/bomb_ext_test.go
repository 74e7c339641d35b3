package api_test

import (
	"errors"
	"regexp"
	"strconv"
	"strings"
	"testing"

	"connectrpc.com/connect"
	"github.com/vmre/vmre/api"
	"github.com/vmre/vmre/gen/vmre/v1/vmrev1connect"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	reflectionv1 "google.golang.org/grpc/reflection/grpc_reflection_v1"

	vmrev1 "github.com/vmre/vmre/gen/vmre/v1"
)

// TestDecompressionBombRefused sends a gzip body of about 32 KiB that
// inflates to 32 MiB to every connect handler on the API port. Each must
// answer resource_exhausted having inflated no more than about the cap:
// connect-go's own refusal inflates the whole message to report its size
// ("message size 33554437 is larger than ..."): a reported size far past
// the cap means the work was done.
// reported is how connect-go states the size it inflated.
var reported = regexp.MustCompile(`message size (\d+) is larger`)

func TestDecompressionBombRefused(t *testing.T) {
	t.Parallel()
	h := start(t, nil)
	const inflated = 32 << 20
	big := strings.Repeat("a", inflated)
	opts := []connect.ClientOption{connect.WithGRPC(), connect.WithSendGzip()}
	tests := []struct {
		name string
		call func() error
	}{
		{"health", func() error {
			c := connect.NewClient[healthpb.HealthCheckRequest, healthpb.HealthCheckResponse](h2cClient(), h.url+"/grpc.health.v1.Health/Check", opts...)
			_, err := c.CallUnary(t.Context(), connect.NewRequest(&healthpb.HealthCheckRequest{Service: big}))
			return err
		}},
		{"runtime service", func() error {
			c := vmrev1connect.NewRuntimeServiceClient(h2cClient(), h.url, opts...)
			_, err := c.GetRuntime(t.Context(), &vmrev1.GetRuntimeRequest{Id: big})
			return err
		}},
		{"reflection", func() error {
			c := connect.NewClient[reflectionv1.ServerReflectionRequest, reflectionv1.ServerReflectionResponse](h2cClient(), h.url+"/grpc.reflection.v1.ServerReflection/ServerReflectionInfo", opts...)
			s := c.CallBidiStream(t.Context())
			if err := s.Send(&reflectionv1.ServerReflectionRequest{Host: big}); err != nil {
				return err
			}
			_, err := s.Receive()
			return err
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := tt.call()
			var ce *connect.Error
			if !errors.As(err, &ce) || ce.Code() != connect.CodeResourceExhausted {
				t.Fatalf("err = %v, want resource_exhausted", err)
			}
			if m := reported.FindStringSubmatch(ce.Message()); m != nil {
				if n, _ := strconv.Atoi(m[1]); n > 2*api.MaxRequestBytes {
					t.Fatalf("the handler inflated %d bytes before refusing the bomb (cap %d): %v", n, api.MaxRequestBytes, err)
				}
			}
		})
	}
}
