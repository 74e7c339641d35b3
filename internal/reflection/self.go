package reflection

import (
	"fmt"
	"strings"
	"sync"

	"github.com/vmre/vmre/internal/rawdesc"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/reflect/protoregistry"
)

// selfFiles resolves the files of the reflection services themselves,
// grpc/reflection/v1/reflection.proto and its v1alpha twin, so that a
// client can describe the service it is talking to. They are built on the
// first lookup of a name in one of their packages.
type selfFiles struct{}

const (
	packageV1      = "grpc.reflection.v1"
	packageV1Alpha = "grpc.reflection.v1alpha"
)

func (selfFiles) FindFileByPath(path string) (protoreflect.FileDescriptor, error) {
	if path != "grpc/reflection/v1/reflection.proto" && path != "grpc/reflection/v1alpha/reflection.proto" {
		return nil, protoregistry.NotFound
	}
	return ownFiles().registry.FindFileByPath(path)
}

func (selfFiles) FindDescriptorByName(name protoreflect.FullName) (protoreflect.Descriptor, error) {
	if !strings.HasPrefix(string(name), packageV1+".") && !strings.HasPrefix(string(name), packageV1Alpha+".") {
		return nil, protoregistry.NotFound
	}
	return ownFiles().registry.FindDescriptorByName(name)
}

// RawFile returns the encoded FileDescriptorProto of fd if fd is one of
// the reflection services' files.
func (selfFiles) RawFile(fd protoreflect.FileDescriptor) ([]byte, bool) {
	if fd.Package() != packageV1 && fd.Package() != packageV1Alpha {
		return nil, false
	}
	own := ownFiles()
	for i, f := range own.files {
		if f == fd {
			return own.raw[i], true
		}
	}
	return nil, false
}

type builtFiles struct {
	registry *protoregistry.Files
	files    []protoreflect.FileDescriptor
	raw      [][]byte // files, encoded
}

// ownFiles builds both files once. Their declarations are fixed at compile
// time, so a failure is a defect of this package (its tests build them).
var ownFiles = sync.OnceValue(func() builtFiles {
	own := builtFiles{registry: new(protoregistry.Files)}
	for _, pkg := range []protoreflect.FullName{packageV1, packageV1Alpha} {
		raw := reflectionFile(pkg).Marshal()
		fd, err := rawdesc.Build(raw, own.registry)
		if err != nil {
			panic(fmt.Errorf("reflection: build the descriptor of %s: %w", pkg, err))
		}
		own.files = append(own.files, fd)
		own.raw = append(own.raw, raw)
	}
	return own
})

// reflectionFile declares grpc/reflection/PKG/reflection.proto: the
// messages and service of gRPC's server reflection protocol, without
// comments or options.
func reflectionFile(pkg protoreflect.FullName) rawdesc.File {
	str := protoreflect.StringKind
	i32 := protoreflect.Int32Kind
	byt := protoreflect.BytesKind
	msg := protoreflect.MessageKind
	one := protoreflect.Optional
	rep := protoreflect.Repeated
	field := func(name protoreflect.Name, number protoreflect.FieldNumber, card protoreflect.Cardinality, kind protoreflect.Kind, typeName protoreflect.Name, oneof int) rawdesc.Field {
		f := rawdesc.Field{Name: name, Number: number, Cardinality: card, Kind: kind, JSONName: jsonName(string(name)), Oneof: oneof}
		if typeName != "" {
			f.TypeName = pkg.Append(typeName)
		}
		return f
	}
	message := func(name protoreflect.Name, oneofs []protoreflect.Name, fields ...rawdesc.Field) rawdesc.Message {
		return rawdesc.Message{Name: name, Oneofs: oneofs, Fields: fields}
	}
	return rawdesc.File{
		Path:    strings.ReplaceAll(string(pkg), ".", "/") + "/reflection.proto",
		Package: pkg,
		Messages: []rawdesc.Message{
			message("ServerReflectionRequest", []protoreflect.Name{"message_request"},
				field("host", 1, one, str, "", -1),
				field("file_by_filename", 3, one, str, "", 0),
				field("file_containing_symbol", 4, one, str, "", 0),
				field("file_containing_extension", 5, one, msg, "ExtensionRequest", 0),
				field("all_extension_numbers_of_type", 6, one, str, "", 0),
				field("list_services", 7, one, str, "", 0)),
			message("ExtensionRequest", nil,
				field("containing_type", 1, one, str, "", -1),
				field("extension_number", 2, one, i32, "", -1)),
			message("ServerReflectionResponse", []protoreflect.Name{"message_response"},
				field("valid_host", 1, one, str, "", -1),
				field("original_request", 2, one, msg, "ServerReflectionRequest", -1),
				field("file_descriptor_response", 4, one, msg, "FileDescriptorResponse", 0),
				field("all_extension_numbers_response", 5, one, msg, "ExtensionNumberResponse", 0),
				field("list_services_response", 6, one, msg, "ListServiceResponse", 0),
				field("error_response", 7, one, msg, "ErrorResponse", 0)),
			message("FileDescriptorResponse", nil,
				field("file_descriptor_proto", 1, rep, byt, "", -1)),
			message("ExtensionNumberResponse", nil,
				field("base_type_name", 1, one, str, "", -1),
				field("extension_number", 2, rep, i32, "", -1)),
			message("ListServiceResponse", nil,
				field("service", 1, rep, msg, "ServiceResponse", -1)),
			message("ServiceResponse", nil,
				field("name", 1, one, str, "", -1)),
			message("ErrorResponse", nil,
				field("error_code", 1, one, i32, "", -1),
				field("error_message", 2, one, str, "", -1)),
		},
		Services: []rawdesc.Service{{
			Name: "ServerReflection",
			Methods: []rawdesc.Method{{
				Name:            method,
				Input:           pkg.Append("ServerReflectionRequest"),
				Output:          pkg.Append("ServerReflectionResponse"),
				ClientStreaming: true,
				ServerStreaming: true,
			}},
		}},
	}
}

// jsonName is protoc's JSON name of a field: lowerCamelCase.
func jsonName(name string) string {
	var b strings.Builder
	upper := false
	for _, c := range name {
		switch {
		case c == '_':
			upper = true
		case upper && 'a' <= c && c <= 'z':
			b.WriteRune(c - 'a' + 'A')
			upper = false
		default:
			b.WriteRune(c)
			upper = false
		}
	}
	return b.String()
}
