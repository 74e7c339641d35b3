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
	return ownFiles().FindFileByPath(path)
}

func (selfFiles) FindDescriptorByName(name protoreflect.FullName) (protoreflect.Descriptor, error) {
	if !strings.HasPrefix(string(name), packageV1+".") && !strings.HasPrefix(string(name), packageV1Alpha+".") {
		return nil, protoregistry.NotFound
	}
	return ownFiles().FindDescriptorByName(name)
}

// ownFiles builds both files once. Their declarations are fixed at compile
// time, so a failure is a defect of this package (its tests build them).
var ownFiles = sync.OnceValue(func() *protoregistry.Files {
	files := new(protoregistry.Files)
	for _, pkg := range []string{packageV1, packageV1Alpha} {
		fd, err := protodesc.NewFile(reflectionFile(pkg), files)
		if err == nil {
			err = files.RegisterFile(fd)
		}
		if err != nil {
			panic(fmt.Errorf("reflection: build the descriptor of %s: %w", pkg, err))
		}
	}
	return files
})

// reflectionFile declares grpc/reflection/PKG/reflection.proto: the
// messages and service of gRPC's server reflection protocol, without
// comments or options.
func reflectionFile(pkg string) *descriptorpb.FileDescriptorProto {
	str := descriptorpb.FieldDescriptorProto_TYPE_STRING
	i32 := descriptorpb.FieldDescriptorProto_TYPE_INT32
	byt := descriptorpb.FieldDescriptorProto_TYPE_BYTES
	msg := descriptorpb.FieldDescriptorProto_TYPE_MESSAGE
	one := descriptorpb.FieldDescriptorProto_LABEL_OPTIONAL
	rep := descriptorpb.FieldDescriptorProto_LABEL_REPEATED
	field := func(name string, number int32, label descriptorpb.FieldDescriptorProto_Label, typ descriptorpb.FieldDescriptorProto_Type, typeName string, oneof int32) *descriptorpb.FieldDescriptorProto {
		f := &descriptorpb.FieldDescriptorProto{
			Name:     proto.String(name),
			Number:   proto.Int32(number),
			Label:    label.Enum(),
			Type:     typ.Enum(),
			JsonName: proto.String(jsonName(name)),
		}
		if typeName != "" {
			f.TypeName = proto.String("." + pkg + "." + typeName)
		}
		if oneof >= 0 {
			f.OneofIndex = proto.Int32(oneof)
		}
		return f
	}
	message := func(name string, oneofs []string, fields ...*descriptorpb.FieldDescriptorProto) *descriptorpb.DescriptorProto {
		m := &descriptorpb.DescriptorProto{Name: proto.String(name), Field: fields}
		for _, o := range oneofs {
			m.OneofDecl = append(m.OneofDecl, &descriptorpb.OneofDescriptorProto{Name: proto.String(o)})
		}
		return m
	}
	return &descriptorpb.FileDescriptorProto{
		Name:    proto.String(strings.ReplaceAll(pkg, ".", "/") + "/reflection.proto"),
		Package: proto.String(pkg),
		Syntax:  proto.String("proto3"),
		MessageType: []*descriptorpb.DescriptorProto{
			message("ServerReflectionRequest", []string{"message_request"},
				field("host", 1, one, str, "", -1),
				field("file_by_filename", 3, one, str, "", 0),
				field("file_containing_symbol", 4, one, str, "", 0),
				field("file_containing_extension", 5, one, msg, "ExtensionRequest", 0),
				field("all_extension_numbers_of_type", 6, one, str, "", 0),
				field("list_services", 7, one, str, "", 0)),
			message("ExtensionRequest", nil,
				field("containing_type", 1, one, str, "", -1),
				field("extension_number", 2, one, i32, "", -1)),
			message("ServerReflectionResponse", []string{"message_response"},
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
		Service: []*descriptorpb.ServiceDescriptorProto{{
			Name: proto.String("ServerReflection"),
			Method: []*descriptorpb.MethodDescriptorProto{{
				Name:            proto.String(method),
				InputType:       proto.String("." + pkg + ".ServerReflectionRequest"),
				OutputType:      proto.String("." + pkg + ".ServerReflectionResponse"),
				ClientStreaming: proto.Bool(true),
				ServerStreaming: proto.Bool(true),
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
