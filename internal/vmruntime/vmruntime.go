// Package vmruntime describes the frozen handshake contract,
// proto/vm/runtime/runtime.proto (package vm.runtime), without registering it
// in the global protobuf registry.
//
// avalanchego's and luxd's generated code register that file and its
// vm.runtime.* names globally, and protobuf-go panics at start-up when two
// packages of one program register the same file. vmre's Go packages must link
// next to theirs, so they encode the handshake request with
// vmre.handshake.v1.InitializeRequest, a message with the same fields under a
// vmre-owned name, send it to the frozen procedure ([InitializeProcedure]), and
// describe the frozen file for server reflection from a descriptor built here,
// kept in a registry of its own. On the wire nothing tells the two apart:
// protobuf binary carries field numbers, JSON carries the same field names,
// and the procedure is a string.
//
// Everything here is safe for concurrent use.
package vmruntime

import (
	"fmt"
	"sync"

	handshakev1 "github.com/vmre/vmre/gen/vmre/handshake/v1"
	"github.com/vmre/vmre/internal/rawdesc"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/reflect/protoregistry"
	"google.golang.org/protobuf/types/known/emptypb"
)

// Names of the frozen contract, as proto/vm/runtime/runtime.proto declares
// them.
const (
	// FilePath is the file's path, as importers and reflection name it.
	FilePath = "vm/runtime/runtime.proto"
	// Package is the file's protobuf package.
	Package = "vm.runtime"
	// ServiceName is the handshake service's full name.
	ServiceName = Package + ".Runtime"
	// InitializeProcedure is the handshake's HTTP path and gRPC method.
	InitializeProcedure = "/" + ServiceName + "/Initialize"
)

// File returns the descriptor of proto/vm/runtime/runtime.proto: its
// package, service and message, without comments or options. It is built
// once, from the vmre.handshake.v1 message, and registered in [Files] only.
func File() protoreflect.FileDescriptor {
	return files().file
}

// Files returns a registry that holds [File] and its one import,
// google/protobuf/empty.proto.
func Files() *protoregistry.Files {
	return files().registry
}

// Initialize returns the descriptor of vm.runtime.Runtime.Initialize, for
// connect-go's WithSchema.
func Initialize() protoreflect.MethodDescriptor {
	return File().Services().ByName("Runtime").Methods().ByName("Initialize")
}

type built struct {
	file     protoreflect.FileDescriptor
	registry *protoregistry.Files
	raw      []byte // file, encoded
}

// files builds the descriptor on first use. The inputs are fixed at compile
// time, so a failure is a defect of this package (its tests build it), not
// something a caller could handle.
var files = sync.OnceValue(func() built {
	b, err := build()
	if err != nil {
		panic(fmt.Errorf("vmruntime: build vm/runtime/runtime.proto: %w", err))
	}
	return b
})

func build() (built, error) {
	request := (&handshakev1.InitializeRequest{}).ProtoReflect().Descriptor()
	fields := request.Fields()
	message := rawdesc.Message{Name: request.Name()}
	for i := range fields.Len() {
		message.Fields = append(message.Fields, rawdesc.FieldOf(fields.Get(i)))
	}
	empty := emptypb.File_google_protobuf_empty_proto
	raw := rawdesc.File{
		Path:     FilePath,
		Package:  Package,
		Imports:  []string{empty.Path()},
		Messages: []rawdesc.Message{message},
		Services: []rawdesc.Service{{
			Name: "Runtime",
			Methods: []rawdesc.Method{{
				Name:   "Initialize",
				Input:  protoreflect.FullName(Package).Append(request.Name()),
				Output: (&emptypb.Empty{}).ProtoReflect().Descriptor().FullName(),
			}},
		}},
	}.Marshal()
	registry := new(protoregistry.Files)
	if err := registry.RegisterFile(empty); err != nil {
		return built{}, fmt.Errorf("register %s: %w", empty.Path(), err)
	}
	file, err := rawdesc.Build(raw, registry)
	if err != nil {
		return built{}, fmt.Errorf("describe %s: %w", FilePath, err)
	}
	return built{file: file, registry: registry, raw: raw}, nil
}

// Registry resolves names and files from [Files], built on its first
// lookup. Server reflection puts it before the global registry, so that
// vm.runtime names resolve even in a program where avalanchego's
// generated code registered the same file globally: both describe the
// same contract.
type Registry struct{}

// FindFileByPath looks path up in [Files].
func (Registry) FindFileByPath(path string) (protoreflect.FileDescriptor, error) {
	return Files().FindFileByPath(path)
}

// FindDescriptorByName looks name up in [Files].
func (Registry) FindDescriptorByName(name protoreflect.FullName) (protoreflect.Descriptor, error) {
	return Files().FindDescriptorByName(name)
}

// RawFile returns the encoded FileDescriptorProto of fd if fd is [File],
// for server reflection.
func (Registry) RawFile(fd protoreflect.FileDescriptor) ([]byte, bool) {
	if fd.Path() != FilePath {
		return nil, false
	}
	b := files()
	if fd != b.file {
		return nil, false
	}
	return b.raw, true
}
