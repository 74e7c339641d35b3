package e2e

import (
	"slices"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	reflectionv1 "google.golang.org/grpc/reflection/grpc_reflection_v1"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protodesc"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/types/descriptorpb"
)

// reflectionMethods are the methods of both reflection protocols. Their
// messages are the same, so v1's generated types serve for both.
var reflectionMethods = []string{
	"/grpc.reflection.v1.ServerReflection/ServerReflectionInfo",
	"/grpc.reflection.v1alpha.ServerReflection/ServerReflectionInfo",
}

// TestReflectionDescribesEveryService: on the API port and on the attach
// endpoint, over reflection v1 and v1alpha, every listed service is
// described by files that a client can build, with every file they import,
// as grpc-go would fetch them; and the real buf curl --list-methods, which
// gives up at the first service it cannot resolve, lists the methods of
// them all. The vmre binary links neither grpc-go's health nor its
// reflection code, so nothing but vmre's own descriptors answers here.
func TestReflectionDescribesEveryService(t *testing.T) {
	t.Parallel()
	e := startVMRE(t, "--attach")
	attach, _, _ := strings.Cut(e.line("attach:"), " ")
	ports := []struct {
		name, addr string
		want       []string
	}{
		{"api", e.apiAddr(), []string{"grpc.health.v1.Health", "grpc.reflection.v1.ServerReflection", "grpc.reflection.v1alpha.ServerReflection", "vmre.v1.RuntimeService"}},
		{"attach", attach, []string{"grpc.reflection.v1.ServerReflection", "grpc.reflection.v1alpha.ServerReflection", "vm.runtime.Runtime"}},
	}
	for _, port := range ports {
		conn, err := grpc.NewClient(port.addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { conn.Close() })
		for _, method := range reflectionMethods {
			listed := askReflection(t, conn, method, &reflectionv1.ServerReflectionRequest{
				MessageRequest: &reflectionv1.ServerReflectionRequest_ListServices{ListServices: "*"},
			}).GetListServicesResponse()
			var names []string
			for _, s := range listed.GetService() {
				names = append(names, s.GetName())
			}
			slices.Sort(names)
			if !slices.Equal(names, port.want) {
				t.Fatalf("%s %s: listed %v, want %v", port.name, method, names, port.want)
			}
			for _, name := range names {
				describeService(t, conn, method, name)
			}
		}
		for _, protocol := range []string{"grpc-v1", "grpc-v1alpha"} {
			out, err := runCmd(t, 5*time.Minute, repoRoot, "go", "tool", "-modfile=tools/go.mod", "buf", "curl",
				"--protocol", "grpc", "--http2-prior-knowledge", "--reflect-protocol", protocol, "--list-methods", "http://"+port.addr)
			if err != nil {
				t.Fatalf("%s: buf curl --reflect-protocol %s --list-methods: %v\n%s", port.name, protocol, err, out)
			}
			for _, name := range port.want {
				if !strings.Contains(out, name+"/") {
					t.Errorf("%s: buf curl --reflect-protocol %s --list-methods lists no method of %s", port.name, protocol, name)
				}
			}
		}
	}
}

// describeService asks, on a stream of its own, for the file that declares
// service, builds the files answered and checks that they declare it with
// its methods. A stream sends each file once, so a fresh one must answer
// with everything the file needs.
func describeService(t *testing.T, conn *grpc.ClientConn, method, service string) {
	t.Helper()
	resp := askReflection(t, conn, method, &reflectionv1.ServerReflectionRequest{
		MessageRequest: &reflectionv1.ServerReflectionRequest_FileContainingSymbol{FileContainingSymbol: service},
	})
	set := new(descriptorpb.FileDescriptorSet)
	for _, raw := range resp.GetFileDescriptorResponse().GetFileDescriptorProto() {
		fdp := new(descriptorpb.FileDescriptorProto)
		if err := proto.Unmarshal(raw, fdp); err != nil {
			t.Fatalf("%s %s: %v", method, service, err)
		}
		set.File = append(set.File, fdp)
	}
	files, err := protodesc.NewFiles(set)
	if err != nil {
		t.Fatalf("%s: the files describing %s do not build: %v", method, service, err)
	}
	d, err := files.FindDescriptorByName(protoreflect.FullName(service))
	if err != nil {
		t.Fatalf("%s: the files describing %s do not declare it: %v", method, service, err)
	}
	if sd, ok := d.(protoreflect.ServiceDescriptor); !ok || sd.Methods().Len() == 0 {
		t.Fatalf("%s: %s is described as %v, want a service with methods", method, service, d)
	}
}

// askReflection sends one request on a new reflection stream of method and
// returns the answer, which must not be an error.
func askReflection(t *testing.T, conn *grpc.ClientConn, method string, req *reflectionv1.ServerReflectionRequest) *reflectionv1.ServerReflectionResponse {
	t.Helper()
	stream, err := conn.NewStream(t.Context(), &grpc.StreamDesc{ClientStreams: true, ServerStreams: true}, method)
	if err != nil {
		t.Fatal(err)
	}
	if err := stream.SendMsg(req); err != nil {
		t.Fatalf("%s: send: %v", method, err)
	}
	if err := stream.CloseSend(); err != nil {
		t.Fatal(err)
	}
	resp := new(reflectionv1.ServerReflectionResponse)
	if err := stream.RecvMsg(resp); err != nil {
		t.Fatalf("%s: receive: %v", method, err)
	}
	if e := resp.GetErrorResponse(); e != nil {
		t.Fatalf("%s: %v: error %d: %s", method, req, e.GetErrorCode(), e.GetErrorMessage())
	}
	return resp
}
