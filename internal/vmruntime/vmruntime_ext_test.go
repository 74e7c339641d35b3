package vmruntime_test

import (
	"errors"
	"os"
	"strings"
	"testing"

	// Every package a program embedding vmre may link: none of them may
	// register the frozen file globally.
	_ "github.com/vmre/vmre/api"
	_ "github.com/vmre/vmre/client"
	_ "github.com/vmre/vmre/engine"
	_ "github.com/vmre/vmre/server"
	_ "github.com/vmre/vmre/subprocess"

	handshakev1 "github.com/vmre/vmre/gen/vmre/handshake/v1"
	"github.com/vmre/vmre/internal/vmruntime"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/reflect/protoregistry"
	"google.golang.org/protobuf/types/dynamicpb"
)

func TestNothingRegisteredGlobally(t *testing.T) {
	t.Parallel()
	if _, err := protoregistry.GlobalFiles.FindFileByPath(vmruntime.FilePath); !errors.Is(err, protoregistry.NotFound) {
		t.Errorf("global registry holds %s (err %v); vmre must not register it", vmruntime.FilePath, err)
	}
	protoregistry.GlobalFiles.RangeFiles(func(fd protoreflect.FileDescriptor) bool {
		if fd.Package() == vmruntime.Package {
			t.Errorf("%s registers package %s globally", fd.Path(), fd.Package())
		}
		return true
	})
}

// TestFileMatchesTheFrozenProto checks the built descriptor against the
// declarations of proto/vm/runtime/runtime.proto. (e2e/avalanchego compares
// it with avalanchego's generated descriptor of the same file.)
func TestFileMatchesTheFrozenProto(t *testing.T) {
	t.Parallel()
	src, err := os.ReadFile("../../proto/vm/runtime/runtime.proto")
	if err != nil {
		t.Fatal(err)
	}
	for _, decl := range []string{
		"package vm.runtime;",
		`import "google/protobuf/empty.proto";`,
		"service Runtime {",
		"rpc Initialize(InitializeRequest) returns (google.protobuf.Empty);",
		"message InitializeRequest {",
		"uint32 protocol_version = 1;",
		"string addr = 2;",
	} {
		if !strings.Contains(string(src), decl) {
			t.Errorf("runtime.proto lacks %q: update internal/vmruntime and proto/vmre/handshake/v1 with it", decl)
		}
	}

	fd := vmruntime.File()
	if fd.Path() != "vm/runtime/runtime.proto" || fd.Package() != "vm.runtime" || fd.Syntax() != protoreflect.Proto3 {
		t.Errorf("file %s, package %s, syntax %v", fd.Path(), fd.Package(), fd.Syntax())
	}
	if fd.Imports().Len() != 1 || fd.Imports().Get(0).Path() != "google/protobuf/empty.proto" {
		t.Errorf("imports %v", fd.Imports())
	}
	m := vmruntime.Initialize()
	if m.FullName() != "vm.runtime.Runtime.Initialize" || m.Input().FullName() != "vm.runtime.InitializeRequest" ||
		m.Output().FullName() != "google.protobuf.Empty" || m.IsStreamingClient() || m.IsStreamingServer() {
		t.Errorf("method %s(%s) returns (%s)", m.FullName(), m.Input().FullName(), m.Output().FullName())
	}
	if got := "/" + string(m.Parent().FullName()) + "/" + string(m.Name()); got != vmruntime.InitializeProcedure {
		t.Errorf("procedure of the descriptor %s, constant %s", got, vmruntime.InitializeProcedure)
	}
	fields := m.Input().Fields()
	tests := []struct {
		name     protoreflect.Name
		number   protoreflect.FieldNumber
		kind     protoreflect.Kind
		jsonName string
	}{
		{"protocol_version", 1, protoreflect.Uint32Kind, "protocolVersion"},
		{"addr", 2, protoreflect.StringKind, "addr"},
	}
	if fields.Len() != len(tests) {
		t.Errorf("%d fields, want %d", fields.Len(), len(tests))
	}
	for _, tt := range tests {
		f := fields.ByName(tt.name)
		if f == nil || f.Number() != tt.number || f.Kind() != tt.kind || f.JSONName() != tt.jsonName ||
			f.Cardinality() != protoreflect.Optional || f.HasPresence() {
			t.Errorf("field %s: %v, want number %d, %v, JSON %s, implicit presence", tt.name, f, tt.number, tt.kind, tt.jsonName)
		}
	}
	if _, err := vmruntime.Files().FindDescriptorByName("vm.runtime.Runtime"); err != nil {
		t.Errorf("Files: %v", err)
	}
}

// TestSameBytes: vmre's message and the frozen one encode alike, in
// protobuf binary and JSON.
func TestSameBytes(t *testing.T) {
	t.Parallel()
	ours := &handshakev1.InitializeRequest{ProtocolVersion: 46, Addr: "127.0.0.1:9651"}
	frozen := dynamicpb.NewMessage(vmruntime.Initialize().Input())
	frozen.Set(frozen.Descriptor().Fields().ByName("protocol_version"), protoreflect.ValueOfUint32(46))
	frozen.Set(frozen.Descriptor().Fields().ByName("addr"), protoreflect.ValueOfString("127.0.0.1:9651"))

	deterministic := proto.MarshalOptions{Deterministic: true}
	a, err := deterministic.Marshal(ours)
	if err != nil {
		t.Fatal(err)
	}
	b, err := deterministic.Marshal(frozen)
	if err != nil {
		t.Fatal(err)
	}
	if string(a) != string(b) {
		t.Errorf("binary: ours %x, frozen %x", a, b)
	}
	for _, opts := range []protojson.MarshalOptions{{}, {UseProtoNames: true}, {EmitUnpopulated: true}} {
		a, err := opts.Marshal(ours)
		if err != nil {
			t.Fatal(err)
		}
		b, err := opts.Marshal(frozen)
		if err != nil {
			t.Fatal(err)
		}
		if string(a) != string(b) {
			t.Errorf("JSON %+v: ours %s, frozen %s", opts, a, b)
		}
	}
}
