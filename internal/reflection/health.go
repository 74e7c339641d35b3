package reflection

import (
	"fmt"
	"strings"
	"sync"

	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protodesc"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/reflect/protoregistry"
	"google.golang.org/protobuf/types/descriptorpb"
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
	return healthFiles().FindFileByPath(path)
}

// FindDescriptorByName resolves names in package grpc.health.v1 only.
func (Health) FindDescriptorByName(name protoreflect.FullName) (protoreflect.Descriptor, error) {
	if !strings.HasPrefix(string(name), healthPackage+".") {
		return nil, protoregistry.NotFound
	}
	return healthFiles().FindDescriptorByName(name)
}

// healthFiles builds the file once. Its declaration is fixed at compile
// time, so a failure is a defect of this package (its tests build it).
var healthFiles = sync.OnceValue(func() *protoregistry.Files {
	files := new(protoregistry.Files)
	fd, err := protodesc.NewFile(healthFileProto(), files)
	if err == nil {
		err = files.RegisterFile(fd)
	}
	if err != nil {
		panic(fmt.Errorf("reflection: build the descriptor of %s: %w", HealthFile, err))
	}
	return files
})

// healthFileProto declares grpc/health/v1/health.proto as gRPC publishes
// it, without comments or options: Check, List and Watch, whether or not a
// server implements the last two (the protocol lets it answer them
// unimplemented).
func healthFileProto() *descriptorpb.FileDescriptorProto {
	optional := descriptorpb.FieldDescriptorProto_LABEL_OPTIONAL
	typ := func(name string) *string { return proto.String("." + healthPackage + "." + name) }
	field := func(name string, number int32, label descriptorpb.FieldDescriptorProto_Label, t descriptorpb.FieldDescriptorProto_Type, typeName *string) *descriptorpb.FieldDescriptorProto {
		return &descriptorpb.FieldDescriptorProto{
			Name: proto.String(name), Number: proto.Int32(number), Label: label.Enum(),
			Type: t.Enum(), TypeName: typeName, JsonName: proto.String(name),
		}
	}
	enumValue := func(name string, number int32) *descriptorpb.EnumValueDescriptorProto {
		return &descriptorpb.EnumValueDescriptorProto{Name: proto.String(name), Number: proto.Int32(number)}
	}
	method := func(name, in, out string, serverStreaming bool) *descriptorpb.MethodDescriptorProto {
		m := &descriptorpb.MethodDescriptorProto{Name: proto.String(name), InputType: typ(in), OutputType: typ(out)}
		if serverStreaming {
			m.ServerStreaming = proto.Bool(true)
		}
		return m
	}
	return &descriptorpb.FileDescriptorProto{
		Name:    proto.String(HealthFile),
		Package: proto.String(healthPackage),
		Syntax:  proto.String("proto3"),
		MessageType: []*descriptorpb.DescriptorProto{
			{
				Name:  proto.String("HealthCheckRequest"),
				Field: []*descriptorpb.FieldDescriptorProto{field("service", 1, optional, descriptorpb.FieldDescriptorProto_TYPE_STRING, nil)},
			},
			{
				Name:  proto.String("HealthCheckResponse"),
				Field: []*descriptorpb.FieldDescriptorProto{field("status", 1, optional, descriptorpb.FieldDescriptorProto_TYPE_ENUM, typ("HealthCheckResponse.ServingStatus"))},
				EnumType: []*descriptorpb.EnumDescriptorProto{{
					Name: proto.String("ServingStatus"),
					Value: []*descriptorpb.EnumValueDescriptorProto{
						enumValue("UNKNOWN", 0), enumValue("SERVING", 1), enumValue("NOT_SERVING", 2), enumValue("SERVICE_UNKNOWN", 3),
					},
				}},
			},
			{Name: proto.String("HealthListRequest")},
			{
				Name: proto.String("HealthListResponse"),
				Field: []*descriptorpb.FieldDescriptorProto{
					field("statuses", 1, descriptorpb.FieldDescriptorProto_LABEL_REPEATED, descriptorpb.FieldDescriptorProto_TYPE_MESSAGE, typ("HealthListResponse.StatusesEntry")),
				},
				NestedType: []*descriptorpb.DescriptorProto{{
					Name: proto.String("StatusesEntry"),
					Field: []*descriptorpb.FieldDescriptorProto{
						field("key", 1, optional, descriptorpb.FieldDescriptorProto_TYPE_STRING, nil),
						field("value", 2, optional, descriptorpb.FieldDescriptorProto_TYPE_MESSAGE, typ("HealthCheckResponse")),
					},
					Options: &descriptorpb.MessageOptions{MapEntry: proto.Bool(true)},
				}},
			},
		},
		Service: []*descriptorpb.ServiceDescriptorProto{{
			Name: proto.String("Health"),
			Method: []*descriptorpb.MethodDescriptorProto{
				method("Check", "HealthCheckRequest", "HealthCheckResponse", false),
				method("List", "HealthListRequest", "HealthListResponse", false),
				method("Watch", "HealthCheckRequest", "HealthCheckResponse", true),
			},
		}},
	}
}
