package reflection

import (
	"fmt"
	"strings"
	"sync"

	"github.com/vmre/vmre/internal/rawdesc"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/reflect/protoregistry"
)

// The health protocol's file and package, as gRPC publishes them.
const (
	HealthFile    = "grpc/health/v1/health.proto"
	healthPackage = "grpc.health.v1"
)

// Health resolves grpc/health/v1/health.proto, the file of
// grpc.health.v1.Health, from a registry of its own built on the first
// lookup of a name in its package.
//
// A server of connectrpc.com/grpchealth needs it to describe that service:
// grpchealth's generated code registers its messages under another package
// (connectext.grpc.health.v1), so the global registry of a program that
// links only grpchealth has no grpc.health.v1 names. The file is not
// registered globally either, since grpc-go's health package registers the
// same names and a program may link both.
type Health struct{}

var _ Resolver = Health{}

// FindFileByPath resolves [HealthFile] only.
func (Health) FindFileByPath(path string) (protoreflect.FileDescriptor, error) {
	if path != HealthFile {
		return nil, protoregistry.NotFound
	}
	return healthFiles().registry.FindFileByPath(path)
}

// FindDescriptorByName resolves names in package grpc.health.v1 only.
func (Health) FindDescriptorByName(name protoreflect.FullName) (protoreflect.Descriptor, error) {
	if !strings.HasPrefix(string(name), healthPackage+".") {
		return nil, protoregistry.NotFound
	}
	return healthFiles().registry.FindDescriptorByName(name)
}

// RawFile returns the encoded FileDescriptorProto of fd if fd is
// [HealthFile] as Health built it.
func (Health) RawFile(fd protoreflect.FileDescriptor) ([]byte, bool) {
	if fd.Path() != HealthFile {
		return nil, false
	}
	h := healthFiles()
	if fd != h.file {
		return nil, false
	}
	return h.raw, true
}

type builtHealth struct {
	registry *protoregistry.Files
	file     protoreflect.FileDescriptor
	raw      []byte // file, encoded
}

// healthFiles builds the file once. Its declaration is fixed at compile
// time, so a failure is a defect of this package (its tests build it).
var healthFiles = sync.OnceValue(func() builtHealth {
	h := builtHealth{registry: new(protoregistry.Files), raw: healthFile().Marshal()}
	fd, err := rawdesc.Build(h.raw, h.registry)
	if err != nil {
		panic(fmt.Errorf("reflection: build the descriptor of %s: %w", HealthFile, err))
	}
	h.file = fd
	return h
})

// healthFile declares grpc/health/v1/health.proto as gRPC publishes it,
// without comments or options: Check, List and Watch, whether or not a
// server implements the last two (the protocol lets it answer them
// unimplemented).
func healthFile() rawdesc.File {
	const pkg protoreflect.FullName = healthPackage
	field := func(name protoreflect.Name, number protoreflect.FieldNumber, card protoreflect.Cardinality, kind protoreflect.Kind, typeName protoreflect.FullName) rawdesc.Field {
		f := rawdesc.Field{Name: name, Number: number, Cardinality: card, Kind: kind, JSONName: jsonName(string(name)), Oneof: -1}
		if typeName != "" {
			f.TypeName = pkg + "." + typeName
		}
		return f
	}
	method := func(name protoreflect.Name, in, out protoreflect.Name, serverStreaming bool) rawdesc.Method {
		return rawdesc.Method{Name: name, Input: pkg.Append(in), Output: pkg.Append(out), ServerStreaming: serverStreaming}
	}
	optional := protoreflect.Optional
	return rawdesc.File{
		Path:    HealthFile,
		Package: pkg,
		Messages: []rawdesc.Message{
			{
				Name:   "HealthCheckRequest",
				Fields: []rawdesc.Field{field("service", 1, optional, protoreflect.StringKind, "")},
			},
			{
				Name:   "HealthCheckResponse",
				Fields: []rawdesc.Field{field("status", 1, optional, protoreflect.EnumKind, "HealthCheckResponse.ServingStatus")},
				Enums: []rawdesc.Enum{{
					Name: "ServingStatus",
					Values: []rawdesc.EnumValue{
						{Name: "UNKNOWN", Number: 0}, {Name: "SERVING", Number: 1}, {Name: "NOT_SERVING", Number: 2}, {Name: "SERVICE_UNKNOWN", Number: 3},
					},
				}},
			},
			{Name: "HealthListRequest"},
			{
				Name:   "HealthListResponse",
				Fields: []rawdesc.Field{field("statuses", 1, protoreflect.Repeated, protoreflect.MessageKind, "HealthListResponse.StatusesEntry")},
				Nested: []rawdesc.Message{{
					Name: "StatusesEntry",
					Fields: []rawdesc.Field{
						field("key", 1, optional, protoreflect.StringKind, ""),
						field("value", 2, optional, protoreflect.MessageKind, "HealthCheckResponse"),
					},
					MapEntry: true,
				}},
			},
		},
		Services: []rawdesc.Service{{
			Name: "Health",
			Methods: []rawdesc.Method{
				method("Check", "HealthCheckRequest", "HealthCheckResponse", false),
				method("List", "HealthListRequest", "HealthListResponse", false),
				method("Watch", "HealthCheckRequest", "HealthCheckResponse", true),
			},
		}},
	}
}
