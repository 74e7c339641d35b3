package rawdesc_test

import (
	"errors"
	"testing"

	// Every package of vmre that registers files globally, so that each
	// file the vmre command can describe over reflection is checked.
	_ "github.com/vmre/vmre/api"
	_ "github.com/vmre/vmre/client"
	_ "github.com/vmre/vmre/engine"
	_ "github.com/vmre/vmre/examples/examplevm"
	_ "github.com/vmre/vmre/server"

	"github.com/vmre/vmre/internal/rawdesc"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protodesc"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/reflect/protoregistry"
	"google.golang.org/protobuf/types/descriptorpb"
	"google.golang.org/protobuf/types/known/emptypb"
	"google.golang.org/protobuf/types/known/structpb"
)

// TestGeneratedIsWhatProtodescEncodes: for every file registered globally,
// the encoding generated code holds describes what protodesc makes of the
// file's descriptor.
func TestGeneratedIsWhatProtodescEncodes(t *testing.T) {
	t.Parallel()
	n := 0
	protoregistry.GlobalFiles.RangeFiles(func(fd protoreflect.FileDescriptor) bool {
		n++
		raw, err := rawdesc.Generated(fd)
		if err != nil {
			t.Errorf("%s: %v", fd.Path(), err)
			return true
		}
		got := new(descriptorpb.FileDescriptorProto)
		if err := proto.Unmarshal(raw, got); err != nil {
			t.Errorf("%s: %v", fd.Path(), err)
			return true
		}
		if want := protodesc.ToFileDescriptorProto(fd); !proto.Equal(got, want) {
			t.Errorf("%s:\n got %v\nwant %v", fd.Path(), got, want)
		}
		return true
	})
	if n < 10 {
		t.Errorf("%d files registered globally; the imports above register more", n)
	}
}

func TestGeneratedNeedsGeneratedTypes(t *testing.T) {
	t.Parallel()
	// A file built here has no Go types, so no encoding of its own.
	files := new(protoregistry.Files)
	fd, err := rawdesc.Build(rawdesc.File{
		Path:     "x/only.proto",
		Package:  "x",
		Messages: []rawdesc.Message{{Name: "M"}},
	}.Marshal(), files)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := rawdesc.Generated(fd); !errors.Is(err, protoregistry.NotFound) {
		t.Errorf("Generated of a built file: %v, want NotFound", err)
	}
}

// TestBuild: a declared file encodes and builds into the descriptor
// protodesc builds of the same declaration, every name resolved.
func TestBuild(t *testing.T) {
	t.Parallel()
	empty := emptypb.File_google_protobuf_empty_proto
	structFile := structpb.File_google_protobuf_struct_proto
	decl := rawdesc.File{
		Path:    "x/y.proto",
		Package: "x.y",
		Imports: []string{empty.Path(), structFile.Path()},
		Messages: []rawdesc.Message{{
			Name:   "Req",
			Oneofs: []protoreflect.Name{"pick"},
			Fields: []rawdesc.Field{
				{Name: "plain", Number: 1, Cardinality: protoreflect.Optional, Kind: protoreflect.Uint32Kind, JSONName: "plain", Oneof: -1},
				{Name: "some_names", Number: 2, Cardinality: protoreflect.Repeated, Kind: protoreflect.StringKind, JSONName: "someNames", Oneof: -1},
				{Name: "a", Number: 3, Cardinality: protoreflect.Optional, Kind: protoreflect.BytesKind, JSONName: "a", Oneof: 0},
				{Name: "b", Number: 4, Cardinality: protoreflect.Optional, Kind: protoreflect.MessageKind, TypeName: "google.protobuf.Struct", JSONName: "b", Oneof: 0},
				{Name: "next", Number: 5, Cardinality: protoreflect.Optional, Kind: protoreflect.MessageKind, TypeName: "x.y.Req", JSONName: "next", Oneof: -1},
			},
		}},
		Services: []rawdesc.Service{{
			Name: "S",
			Methods: []rawdesc.Method{
				{Name: "Unary", Input: "x.y.Req", Output: "google.protobuf.Empty"},
				{Name: "Bidi", Input: "x.y.Req", Output: "x.y.Req", ClientStreaming: true, ServerStreaming: true},
			},
		}},
	}
	registry := func(t *testing.T) *protoregistry.Files {
		t.Helper()
		files := new(protoregistry.Files)
		for _, fd := range []protoreflect.FileDescriptor{empty, structFile} {
			if err := files.RegisterFile(fd); err != nil {
				t.Fatal(err)
			}
		}
		return files
	}

	raw := decl.Marshal()
	files := registry(t)
	fd, err := rawdesc.Build(raw, files)
	if err != nil {
		t.Fatal(err)
	}
	if got, err := files.FindFileByPath("x/y.proto"); err != nil || got != fd {
		t.Fatalf("registry holds %v (%v), want the built file", got, err)
	}

	fdp := new(descriptorpb.FileDescriptorProto)
	if err := proto.Unmarshal(raw, fdp); err != nil {
		t.Fatal(err)
	}
	want, err := protodesc.NewFile(fdp, registry(t))
	if err != nil {
		t.Fatalf("protodesc refuses the encoding: %v", err)
	}
	if got, want := protodesc.ToFileDescriptorProto(fd), protodesc.ToFileDescriptorProto(want); !proto.Equal(got, want) {
		t.Errorf("built:\n got %v\nwant %v", got, want)
	}
	req := fd.Messages().ByName("Req")
	if b := req.Fields().ByName("b"); b.Message() == nil || b.Message().IsPlaceholder() || b.ContainingOneof() == nil {
		t.Errorf("field b: message %v, oneof %v", b.Message(), b.ContainingOneof())
	}
	if next := req.Fields().ByName("next"); next.Message() != req {
		t.Errorf("field next is a %v, want Req itself", next.Message())
	}
	bidi := fd.Services().ByName("S").Methods().ByName("Bidi")
	if !bidi.IsStreamingClient() || !bidi.IsStreamingServer() || bidi.Input() != req {
		t.Errorf("method Bidi: %v", bidi)
	}
	if out := fd.Services().ByName("S").Methods().ByName("Unary").Output(); out != (&emptypb.Empty{}).ProtoReflect().Descriptor() {
		t.Errorf("method Unary returns %v", out)
	}
}

func TestBuildRefusesWhatTheRegistryRefuses(t *testing.T) {
	t.Parallel()
	files := new(protoregistry.Files)
	raw := rawdesc.File{Path: "x/dup.proto", Package: "x", Messages: []rawdesc.Message{{Name: "M"}}}.Marshal()
	if _, err := rawdesc.Build(raw, files); err != nil {
		t.Fatal(err)
	}
	if _, err := rawdesc.Build(raw, files); err == nil {
		t.Error("a second file of the same path built; want the registry's refusal")
	}
}
