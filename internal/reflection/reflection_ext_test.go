package reflection_test

import (
	"errors"
	"net"
	"net/http"
	"slices"
	"testing"

	"github.com/vmre/vmre/internal/reflection"
	"github.com/vmre/vmre/internal/vmruntime"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	reflectionv1 "google.golang.org/grpc/reflection/grpc_reflection_v1"
	reflectionv1alpha "google.golang.org/grpc/reflection/grpc_reflection_v1alpha"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protodesc"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/reflect/protoregistry"
	"google.golang.org/protobuf/types/descriptorpb"
	"google.golang.org/protobuf/types/gofeaturespb"
)

var services = []string{vmruntime.ServiceName, reflection.ServiceV1, reflection.ServiceV1Alpha}

// serve starts the reflection handlers on an h2c server and returns a
// grpc-go connection to it, as grpcurl makes one.
func serve(t *testing.T, extra ...reflection.Resolver) *grpc.ClientConn {
	t.Helper()
	r := reflection.New(services, append([]reflection.Resolver{vmruntime.Registry{}}, extra...)...)
	mux := http.NewServeMux()
	mux.Handle(r.HandlerV1())
	mux.Handle(r.HandlerV1Alpha())
	var protocols http.Protocols
	protocols.SetUnencryptedHTTP2(true)
	srv := &http.Server{Handler: mux, Protocols: &protocols, ReadHeaderTimeout: 10e9}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go func() { _ = srv.Serve(ln) }()
	t.Cleanup(func() { srv.Close() })
	conn, err := grpc.NewClient(ln.Addr().String(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	return conn
}

func fileNames(t *testing.T, resp *reflectionv1.ServerReflectionResponse) []string {
	t.Helper()
	if e := resp.GetErrorResponse(); e != nil {
		t.Fatalf("error response %d: %s", e.GetErrorCode(), e.GetErrorMessage())
	}
	var names []string
	for _, raw := range resp.GetFileDescriptorResponse().GetFileDescriptorProto() {
		fdp := new(descriptorpb.FileDescriptorProto)
		if err := proto.Unmarshal(raw, fdp); err != nil {
			t.Fatal(err)
		}
		names = append(names, fdp.GetName())
	}
	return names
}

// TestV1 drives one v1 stream through every kind of query, as grpc-go's
// reflection client encodes them, and checks each answer and the echo of
// its request.
func TestV1(t *testing.T) {
	t.Parallel()
	stream, err := reflectionv1.NewServerReflectionClient(serve(t)).ServerReflectionInfo(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	ask := func(req *reflectionv1.ServerReflectionRequest) *reflectionv1.ServerReflectionResponse {
		t.Helper()
		if err := stream.Send(req); err != nil {
			t.Fatal(err)
		}
		resp, err := stream.Recv()
		if err != nil {
			t.Fatal(err)
		}
		if !proto.Equal(resp.GetOriginalRequest(), req) || resp.GetValidHost() != req.GetHost() {
			t.Fatalf("answer to %v echoes %v, host %q", req, resp.GetOriginalRequest(), resp.GetValidHost())
		}
		return resp
	}
	symbol := func(s string) *reflectionv1.ServerReflectionRequest {
		return &reflectionv1.ServerReflectionRequest{Host: "h", MessageRequest: &reflectionv1.ServerReflectionRequest_FileContainingSymbol{FileContainingSymbol: s}}
	}

	resp := ask(&reflectionv1.ServerReflectionRequest{MessageRequest: &reflectionv1.ServerReflectionRequest_ListServices{ListServices: "*"}})
	var listed []string
	for _, s := range resp.GetListServicesResponse().GetService() {
		listed = append(listed, s.GetName())
	}
	if !slices.Equal(listed, services) {
		t.Fatalf("ListServices = %v, want %v", listed, services)
	}

	// The handshake contract comes from vmre's own registry, with its
	// import; asked again, only the file itself is sent.
	if got := fileNames(t, ask(symbol("vm.runtime.Runtime.Initialize"))); !slices.Equal(got, []string{"vm/runtime/runtime.proto", "google/protobuf/empty.proto"}) {
		t.Fatalf("vm.runtime.Runtime.Initialize: files %v", got)
	}
	if got := fileNames(t, ask(symbol("vm.runtime.InitializeRequest"))); !slices.Equal(got, []string{"vm/runtime/runtime.proto"}) {
		t.Fatalf("asked again: files %v", got)
	}
	if got := fileNames(t, ask(&reflectionv1.ServerReflectionRequest{MessageRequest: &reflectionv1.ServerReflectionRequest_FileByFilename{FileByFilename: "google/protobuf/empty.proto"}})); !slices.Equal(got, []string{"google/protobuf/empty.proto"}) {
		t.Fatalf("FileByFilename: files %v", got)
	}

	// Unknown names are answered in the stream, which goes on.
	for _, req := range []*reflectionv1.ServerReflectionRequest{
		symbol("no.such.Symbol"),
		{MessageRequest: &reflectionv1.ServerReflectionRequest_FileByFilename{FileByFilename: "no/such.proto"}},
		{MessageRequest: &reflectionv1.ServerReflectionRequest_AllExtensionNumbersOfType{AllExtensionNumbersOfType: "no.Such"}},
		{MessageRequest: &reflectionv1.ServerReflectionRequest_FileContainingExtension{FileContainingExtension: &reflectionv1.ExtensionRequest{ContainingType: "google.protobuf.FeatureSet", ExtensionNumber: 99999}}},
	} {
		if e := ask(req).GetErrorResponse(); e.GetErrorCode() != int32(codes.NotFound) || e.GetErrorMessage() == "" {
			t.Fatalf("%v: error response %v, want NOT_FOUND", req, e)
		}
	}

	// Extensions: Go's feature set extends google.protobuf.FeatureSet.
	goExt := gofeaturespb.E_Go.TypeDescriptor()
	resp = ask(&reflectionv1.ServerReflectionRequest{MessageRequest: &reflectionv1.ServerReflectionRequest_AllExtensionNumbersOfType{AllExtensionNumbersOfType: "google.protobuf.FeatureSet"}})
	if nums := resp.GetAllExtensionNumbersResponse(); nums.GetBaseTypeName() != "google.protobuf.FeatureSet" || !slices.Contains(nums.GetExtensionNumber(), int32(goExt.Number())) || !slices.IsSorted(nums.GetExtensionNumber()) {
		t.Fatalf("AllExtensionNumbersOfType = %v, want %d among them, sorted", nums, goExt.Number())
	}
	resp = ask(&reflectionv1.ServerReflectionRequest{MessageRequest: &reflectionv1.ServerReflectionRequest_FileContainingExtension{FileContainingExtension: &reflectionv1.ExtensionRequest{ContainingType: "google.protobuf.FeatureSet", ExtensionNumber: int32(goExt.Number())}}})
	if got := fileNames(t, resp); len(got) == 0 || got[0] != goExt.ParentFile().Path() {
		t.Fatalf("FileContainingExtension: files %v, want %s first", got, goExt.ParentFile().Path())
	}

	// A request without a query ends the stream.
	if err := stream.Send(&reflectionv1.ServerReflectionRequest{Host: "h"}); err != nil {
		t.Fatal(err)
	}
	if _, err := stream.Recv(); status.Code(err) != codes.InvalidArgument {
		t.Fatalf("request without a query: %v, want InvalidArgument", err)
	}
}

// TestDescribesItself: the reflection services' own files describe what
// grpc-go's generated code of reflection.proto declares.
func TestDescribesItself(t *testing.T) {
	t.Parallel()
	conn := serve(t)
	strip := func(fdp *descriptorpb.FileDescriptorProto) *descriptorpb.FileDescriptorProto {
		fdp.Options, fdp.SourceCodeInfo = nil, nil
		return fdp
	}

	v1, err := reflectionv1.NewServerReflectionClient(conn).ServerReflectionInfo(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	if err := v1.Send(&reflectionv1.ServerReflectionRequest{MessageRequest: &reflectionv1.ServerReflectionRequest_FileContainingSymbol{FileContainingSymbol: reflection.ServiceV1}}); err != nil {
		t.Fatal(err)
	}
	resp, err := v1.Recv()
	if err != nil {
		t.Fatal(err)
	}
	files := resp.GetFileDescriptorResponse().GetFileDescriptorProto()
	if len(files) != 1 {
		t.Fatalf("%d files (%v), want 1", len(files), resp.GetErrorResponse())
	}
	got := new(descriptorpb.FileDescriptorProto)
	if err := proto.Unmarshal(files[0], got); err != nil {
		t.Fatal(err)
	}
	want := strip(protodesc.ToFileDescriptorProto(reflectionv1.File_grpc_reflection_v1_reflection_proto))
	if !proto.Equal(strip(got), want) {
		t.Fatalf("v1 file:\n got %v\nwant %v", got, want)
	}

	alpha, err := reflectionv1alpha.NewServerReflectionClient(conn).ServerReflectionInfo(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	//lint:ignore SA1019 v1alpha is what older grpcurl builds call
	if err := alpha.Send(&reflectionv1alpha.ServerReflectionRequest{MessageRequest: &reflectionv1alpha.ServerReflectionRequest_FileByFilename{FileByFilename: "grpc/reflection/v1alpha/reflection.proto"}}); err != nil {
		t.Fatal(err)
	}
	aresp, err := alpha.Recv()
	if err != nil {
		t.Fatal(err)
	}
	//lint:ignore SA1019 v1alpha is what older grpcurl builds call
	afiles := aresp.GetFileDescriptorResponse().GetFileDescriptorProto()
	if len(afiles) != 1 {
		t.Fatalf("v1alpha: %d files, want 1", len(afiles))
	}
	if err := proto.Unmarshal(afiles[0], got); err != nil {
		t.Fatal(err)
	}
	want = strip(protodesc.ToFileDescriptorProto(reflectionv1alpha.File_grpc_reflection_v1alpha_reflection_proto))
	if !proto.Equal(strip(got), want) {
		t.Fatalf("v1alpha file:\n got %v\nwant %v", got, want)
	}
}

// TestHealthFile: the health protocol's file is the one grpc-go's generated
// code declares, and resolves by path and by each of its names.
func TestHealthFile(t *testing.T) {
	t.Parallel()
	fd, err := reflection.Health{}.FindFileByPath(reflection.HealthFile)
	if err != nil {
		t.Fatal(err)
	}
	got := protodesc.ToFileDescriptorProto(fd)
	want := protodesc.ToFileDescriptorProto(healthpb.File_grpc_health_v1_health_proto)
	want.Options, want.SourceCodeInfo = nil, nil
	if !proto.Equal(got, want) {
		t.Fatalf("health file:\n got %v\nwant %v", got, want)
	}
	for _, name := range []protoreflect.FullName{"grpc.health.v1.Health", "grpc.health.v1.Health.Watch", "grpc.health.v1.HealthCheckResponse.ServingStatus"} {
		if d, err := (reflection.Health{}).FindDescriptorByName(name); err != nil || d.ParentFile() != fd {
			t.Errorf("%s: %v, %v; want a name of %s", name, d, err, reflection.HealthFile)
		}
	}
	if _, err := (reflection.Health{}).FindDescriptorByName("vm.runtime.Runtime"); !errors.Is(err, protoregistry.NotFound) {
		t.Errorf("a name of another package: %v, want NotFound", err)
	}
}

// TestHealthOverReflection: a reflector given [reflection.Health] sends
// the health file, as grpc-go's generated code declares it, for the
// service's name, though grpc-go's health package registered a file of the
// same names globally in this test binary.
func TestHealthOverReflection(t *testing.T) {
	t.Parallel()
	conn := serve(t, reflection.Health{})
	stream, err := reflectionv1.NewServerReflectionClient(conn).ServerReflectionInfo(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	if err := stream.Send(&reflectionv1.ServerReflectionRequest{MessageRequest: &reflectionv1.ServerReflectionRequest_FileContainingSymbol{FileContainingSymbol: "grpc.health.v1.Health"}}); err != nil {
		t.Fatal(err)
	}
	resp, err := stream.Recv()
	if err != nil {
		t.Fatal(err)
	}
	if names := fileNames(t, resp); !slices.Equal(names, []string{reflection.HealthFile}) {
		t.Fatalf("files %v, want %s", names, reflection.HealthFile)
	}
	got := new(descriptorpb.FileDescriptorProto)
	if err := proto.Unmarshal(resp.GetFileDescriptorResponse().GetFileDescriptorProto()[0], got); err != nil {
		t.Fatal(err)
	}
	want := protodesc.ToFileDescriptorProto(healthpb.File_grpc_health_v1_health_proto)
	want.Options, want.SourceCodeInfo = nil, nil
	if !proto.Equal(got, want) {
		t.Fatalf("health file:\n got %v\nwant %v", got, want)
	}
}
