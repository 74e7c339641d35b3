// Package rawdesc works with protobuf file descriptors in their wire form,
// an encoded google.protobuf.FileDescriptorProto, without
// google.golang.org/protobuf/reflect/protodesc.
//
// Linking protodesc costs every start of a program, whatever it then does:
// its package initialisation decodes the editions defaults with
// descriptorpb, and that decode makes descriptor.proto's message types
// ready, about a million instructions, a sixth of `vmre version`. What
// vmre needs of it is small: to build the few descriptors it declares
// itself ([File], [Build]) and to encode the files that server reflection
// sends ([Generated]). Generated code already holds every file's encoding,
// so nothing here needs descriptorpb either.
//
// Everything here is safe for concurrent use.
package rawdesc

import (
	"bytes"
	"compress/gzip"
	"fmt"
	"io"

	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/reflect/protoregistry"
	"google.golang.org/protobuf/runtime/protoimpl"
)

// Field numbers of descriptor.proto's messages, as far as [File] uses them.
const (
	fileName       protowire.Number = 1
	filePackage    protowire.Number = 2
	fileDependency protowire.Number = 3
	fileMessage    protowire.Number = 4
	fileService    protowire.Number = 6
	fileSyntax     protowire.Number = 12

	messageName    protowire.Number = 1
	messageField   protowire.Number = 2
	messageNested  protowire.Number = 3
	messageEnum    protowire.Number = 4
	messageOptions protowire.Number = 7
	messageOneof   protowire.Number = 8

	messageOptionsMapEntry protowire.Number = 7

	enumName        protowire.Number = 1
	enumValue       protowire.Number = 2
	enumValueName   protowire.Number = 1
	enumValueNumber protowire.Number = 2

	fieldName     protowire.Number = 1
	fieldNumber   protowire.Number = 3
	fieldLabel    protowire.Number = 4
	fieldType     protowire.Number = 5
	fieldTypeName protowire.Number = 6
	fieldOneof    protowire.Number = 9
	fieldJSONName protowire.Number = 10

	oneofName protowire.Number = 1

	serviceName   protowire.Number = 1
	serviceMethod protowire.Number = 2

	methodName            protowire.Number = 1
	methodInput           protowire.Number = 2
	methodOutput          protowire.Number = 3
	methodClientStreaming protowire.Number = 5
	methodServerStreaming protowire.Number = 6
)

// File declares a proto3 file without options or comments: the subset of
// FileDescriptorProto that the files vmre declares itself use.
type File struct {
	Path     string
	Package  protoreflect.FullName
	Imports  []string
	Messages []Message
	Services []Service
}

// Message declares a message of a [File]: no extensions, and no options
// but map_entry.
type Message struct {
	Name   protoreflect.Name
	Oneofs []protoreflect.Name
	Fields []Field
	Nested []Message
	Enums  []Enum
	// MapEntry marks the message a map field's entry.
	MapEntry bool
}

// Enum declares an enum of a [Message], without options.
type Enum struct {
	Name   protoreflect.Name
	Values []EnumValue
}

// EnumValue declares a value of an [Enum].
type EnumValue struct {
	Name   protoreflect.Name
	Number protoreflect.EnumNumber
}

// Field declares a field of a [Message].
type Field struct {
	Name        protoreflect.Name
	Number      protoreflect.FieldNumber
	Cardinality protoreflect.Cardinality
	Kind        protoreflect.Kind
	// TypeName names the message or enum of a field of that kind.
	TypeName protoreflect.FullName
	// JSONName is the field's JSON name, protoc's lowerCamelCase of its
	// name unless the file says otherwise.
	JSONName string
	// Oneof is the index in the message's Oneofs of the oneof the field
	// belongs to, or -1.
	Oneof int
}

// FieldOf declares the same field as fd, a field that is not in a oneof
// and not of a message or enum kind.
func FieldOf(fd protoreflect.FieldDescriptor) Field {
	return Field{
		Name:        fd.Name(),
		Number:      fd.Number(),
		Cardinality: fd.Cardinality(),
		Kind:        fd.Kind(),
		JSONName:    fd.JSONName(),
		Oneof:       -1,
	}
}

// Service declares a service of a [File].
type Service struct {
	Name    protoreflect.Name
	Methods []Method
}

// Method declares a method of a [Service].
type Method struct {
	Name                             protoreflect.Name
	Input, Output                    protoreflect.FullName
	ClientStreaming, ServerStreaming bool
}

// Marshal encodes f as a FileDescriptorProto. It does not check f: [Build]
// does what checking a descriptor built from it gets.
func (f File) Marshal() []byte {
	var b []byte
	b = appendString(b, fileName, f.Path)
	b = appendString(b, filePackage, string(f.Package))
	for _, imp := range f.Imports {
		b = appendString(b, fileDependency, imp)
	}
	for _, m := range f.Messages {
		b = appendMessage(b, fileMessage, m.marshal())
	}
	for _, s := range f.Services {
		b = appendMessage(b, fileService, s.marshal())
	}
	return appendString(b, fileSyntax, "proto3")
}

func (m Message) marshal() []byte {
	b := appendString(nil, messageName, string(m.Name))
	for _, f := range m.Fields {
		b = appendMessage(b, messageField, f.marshal())
	}
	for _, n := range m.Nested {
		b = appendMessage(b, messageNested, n.marshal())
	}
	for _, e := range m.Enums {
		eb := appendString(nil, enumName, string(e.Name))
		for _, v := range e.Values {
			vb := appendString(nil, enumValueName, string(v.Name))
			// An enum number is an int32, encoded as int32 varints are.
			vb = appendVarint(vb, enumValueNumber, uint64(int64(v.Number)))
			eb = appendMessage(eb, enumValue, vb)
		}
		b = appendMessage(b, messageEnum, eb)
	}
	if m.MapEntry {
		b = appendMessage(b, messageOptions, appendVarint(nil, messageOptionsMapEntry, 1))
	}
	for _, o := range m.Oneofs {
		b = appendMessage(b, messageOneof, appendString(nil, oneofName, string(o)))
	}
	return b
}

func (f Field) marshal() []byte {
	b := appendString(nil, fieldName, string(f.Name))
	b = appendVarint(b, fieldNumber, uint64(f.Number))
	// Cardinality and Kind have the numbers of FieldDescriptorProto's
	// Label and Type.
	b = appendVarint(b, fieldLabel, uint64(f.Cardinality))
	b = appendVarint(b, fieldType, uint64(f.Kind))
	if f.TypeName != "" {
		b = appendString(b, fieldTypeName, "."+string(f.TypeName))
	}
	if f.Oneof >= 0 {
		b = appendVarint(b, fieldOneof, uint64(f.Oneof))
	}
	return appendString(b, fieldJSONName, f.JSONName)
}

func (s Service) marshal() []byte {
	b := appendString(nil, serviceName, string(s.Name))
	for _, m := range s.Methods {
		mb := appendString(nil, methodName, string(m.Name))
		mb = appendString(mb, methodInput, "."+string(m.Input))
		mb = appendString(mb, methodOutput, "."+string(m.Output))
		if m.ClientStreaming {
			mb = appendVarint(mb, methodClientStreaming, 1)
		}
		if m.ServerStreaming {
			mb = appendVarint(mb, methodServerStreaming, 1)
		}
		b = appendMessage(b, serviceMethod, mb)
	}
	return b
}

func appendString(b []byte, num protowire.Number, s string) []byte {
	b = protowire.AppendTag(b, num, protowire.BytesType)
	return protowire.AppendString(b, s)
}

func appendMessage(b []byte, num protowire.Number, m []byte) []byte {
	b = protowire.AppendTag(b, num, protowire.BytesType)
	return protowire.AppendBytes(b, m)
}

func appendVarint(b []byte, num protowire.Number, v uint64) []byte {
	b = protowire.AppendTag(b, num, protowire.VarintType)
	return protowire.AppendVarint(b, v)
}

// Build makes the descriptor of raw, an encoded FileDescriptorProto, and
// registers it in files, which must already hold every file it imports.
// It builds the descriptor the way generated code does, which checks less
// than protodesc.NewFile: the file's names and imports are checked as
// files registers it, and a type name that resolves to nothing is a
// placeholder, not an error. Callers build only files they declare, and
// their tests resolve every name.
func Build(raw []byte, files *protoregistry.Files) (fd protoreflect.FileDescriptor, err error) {
	// The builder panics on what registering the file refuses.
	defer func() {
		if p := recover(); p != nil {
			if e, ok := p.(error); ok {
				fd, err = nil, fmt.Errorf("build descriptor: %w", e)
				return
			}
			fd, err = nil, fmt.Errorf("build descriptor: %v", p)
		}
	}()
	out := protoimpl.DescBuilder{RawDescriptor: raw, FileRegistry: files}.Build()
	return out.File, nil
}

// legacyMessage and legacyEnum are the methods through which code made by
// protoc-gen-go gives its file's encoded descriptor, gzipped.
type (
	legacyMessage interface{ Descriptor() ([]byte, []int) }
	legacyEnum    interface{ EnumDescriptor() ([]byte, []int) }
)

// Generated returns the encoded FileDescriptorProto of fd, a file of code
// generated by protoc-gen-go and registered in
// [protoregistry.GlobalTypes]: the bytes protoc made of the .proto file,
// options included, source comments not. It finds them through one of the
// file's top-level messages or enums, and fails with
// [protoregistry.NotFound] for a file that has neither, or whose types are
// not generated code registered globally.
func Generated(fd protoreflect.FileDescriptor) ([]byte, error) {
	var gz []byte
	msgs := fd.Messages()
	for i := 0; i < msgs.Len() && gz == nil; i++ {
		md := msgs.Get(i)
		mt, err := protoregistry.GlobalTypes.FindMessageByName(md.FullName())
		if err != nil || mt.Descriptor() != md {
			continue
		}
		if l, ok := mt.Zero().Interface().(legacyMessage); ok {
			gz, _ = l.Descriptor()
		}
	}
	enums := fd.Enums()
	for i := 0; i < enums.Len() && gz == nil; i++ {
		ed := enums.Get(i)
		et, err := protoregistry.GlobalTypes.FindEnumByName(ed.FullName())
		if err != nil || et.Descriptor() != ed {
			continue
		}
		if l, ok := et.New(0).(legacyEnum); ok {
			gz, _ = l.EnumDescriptor()
		}
	}
	if gz == nil {
		return nil, fmt.Errorf("%w: no generated encoding of %s", protoregistry.NotFound, fd.Path())
	}
	zr, err := gzip.NewReader(bytes.NewReader(gz))
	if err != nil {
		return nil, fmt.Errorf("decompress descriptor of %s: %w", fd.Path(), err)
	}
	raw, err := io.ReadAll(zr)
	if err != nil {
		return nil, fmt.Errorf("decompress descriptor of %s: %w", fd.Path(), err)
	}
	return raw, nil
}
