package reflection

import (
	"errors"
	"fmt"
	"unicode/utf8"

	"connectrpc.com/connect"
	"google.golang.org/protobuf/encoding/protowire"
)

// The reflection protocol's messages, by field number, as
// grpc/reflection/v1/reflection.proto declares them (v1alpha is the same
// on the wire). A request's query and a response's answer are each one
// field of a oneof; their kinds below are those field numbers.

// queryKind is the field number of a ServerReflectionRequest's
// message_request.
type queryKind protowire.Number

const (
	noQuery                   queryKind = 0
	fileByFilename            queryKind = 3
	fileContainingSymbol      queryKind = 4
	fileContainingExtension   queryKind = 5
	allExtensionNumbersOfType queryKind = 6
	listServices              queryKind = 7
)

// answerKind is the field number of a ServerReflectionResponse's
// message_response.
type answerKind protowire.Number

const (
	fileDescriptorAnswer   answerKind = 4
	extensionNumbersAnswer answerKind = 5
	listServicesAnswer     answerKind = 6
	errorAnswer            answerKind = 7
)

// request is a ServerReflectionRequest.
type request struct {
	host string
	kind queryKind
	// name is the query's string: a file path, a symbol, a message type
	// (file_containing_extension's containing_type included) or
	// list_services' ignored argument.
	name      string
	extension int32 // file_containing_extension's extension_number
}

// response is a ServerReflectionResponse; original_request is encoded
// from the request it answers.
type response struct {
	validHost string
	request   *request
	kind      answerKind

	files            [][]byte // serialized FileDescriptorProtos
	extensionsOf     string
	extensionNumbers []int32
	services         []string
	errCode          int32
	errMessage       string
}

func (r *response) setFiles(files [][]byte, err error) {
	if err != nil {
		r.setError(err)
		return
	}
	r.files, r.kind = files, fileDescriptorAnswer
}

// setError answers NOT_FOUND in the stream, as gRPC's reflection servers
// do for a name they cannot resolve; the stream goes on.
func (r *response) setError(err error) {
	r.errCode, r.errMessage, r.kind = int32(connect.CodeNotFound), err.Error(), errorAnswer
}

var errMalformed = errors.New("malformed reflection request")

func (q *request) unmarshal(b []byte) error {
	*q = request{}
	for len(b) > 0 {
		num, typ, n := protowire.ConsumeTag(b)
		if n < 0 {
			return fmt.Errorf("%w: %w", errMalformed, protowire.ParseError(n))
		}
		b = b[n:]
		if typ == protowire.BytesType {
			v, n := protowire.ConsumeBytes(b)
			if n < 0 {
				return fmt.Errorf("%w: %w", errMalformed, protowire.ParseError(n))
			}
			b = b[n:]
			switch k := queryKind(num); {
			case num == 1:
				if !utf8.Valid(v) {
					return fmt.Errorf("%w: host is not UTF-8", errMalformed)
				}
				q.host = string(v)
			case k == fileContainingExtension:
				q.kind = k
				if err := q.unmarshalExtension(v); err != nil {
					return err
				}
			case k == fileByFilename || k == fileContainingSymbol || k == allExtensionNumbersOfType || k == listServices:
				if !utf8.Valid(v) {
					return fmt.Errorf("%w: field %d is not UTF-8", errMalformed, num)
				}
				q.kind, q.name, q.extension = k, string(v), 0
			}
			continue
		}
		n = protowire.ConsumeFieldValue(num, typ, b)
		if n < 0 {
			return fmt.Errorf("%w: %w", errMalformed, protowire.ParseError(n))
		}
		b = b[n:]
	}
	return nil
}

// unmarshalExtension decodes an ExtensionRequest.
func (q *request) unmarshalExtension(b []byte) error {
	q.name, q.extension = "", 0
	for len(b) > 0 {
		num, typ, n := protowire.ConsumeTag(b)
		if n < 0 {
			return fmt.Errorf("%w: %w", errMalformed, protowire.ParseError(n))
		}
		b = b[n:]
		switch {
		case num == 1 && typ == protowire.BytesType:
			v, n := protowire.ConsumeBytes(b)
			if n < 0 {
				return fmt.Errorf("%w: %w", errMalformed, protowire.ParseError(n))
			}
			if !utf8.Valid(v) {
				return fmt.Errorf("%w: containing_type is not UTF-8", errMalformed)
			}
			q.name, b = string(v), b[n:]
		case num == 2 && typ == protowire.VarintType:
			v, n := protowire.ConsumeVarint(b)
			if n < 0 {
				return fmt.Errorf("%w: %w", errMalformed, protowire.ParseError(n))
			}
			q.extension, b = int32(v), b[n:]
		default:
			n := protowire.ConsumeFieldValue(num, typ, b)
			if n < 0 {
				return fmt.Errorf("%w: %w", errMalformed, protowire.ParseError(n))
			}
			b = b[n:]
		}
	}
	return nil
}

func (q *request) appendTo(b []byte) []byte {
	if q.host != "" {
		b = protowire.AppendTag(b, 1, protowire.BytesType)
		b = protowire.AppendString(b, q.host)
	}
	switch q.kind {
	case noQuery:
	case fileContainingExtension:
		var ext []byte
		if q.name != "" {
			ext = protowire.AppendTag(ext, 1, protowire.BytesType)
			ext = protowire.AppendString(ext, q.name)
		}
		if q.extension != 0 {
			ext = protowire.AppendTag(ext, 2, protowire.VarintType)
			ext = protowire.AppendVarint(ext, uint64(int64(q.extension)))
		}
		b = protowire.AppendTag(b, protowire.Number(q.kind), protowire.BytesType)
		b = protowire.AppendBytes(b, ext)
	default:
		b = protowire.AppendTag(b, protowire.Number(q.kind), protowire.BytesType)
		b = protowire.AppendString(b, q.name)
	}
	return b
}

func (r *response) marshal() []byte {
	var b []byte
	if r.validHost != "" {
		b = protowire.AppendTag(b, 1, protowire.BytesType)
		b = protowire.AppendString(b, r.validHost)
	}
	if r.request != nil {
		b = protowire.AppendTag(b, 2, protowire.BytesType)
		b = protowire.AppendBytes(b, r.request.appendTo(nil))
	}
	var inner []byte
	switch r.kind {
	case fileDescriptorAnswer:
		for _, f := range r.files {
			inner = protowire.AppendTag(inner, 1, protowire.BytesType)
			inner = protowire.AppendBytes(inner, f)
		}
	case extensionNumbersAnswer:
		if r.extensionsOf != "" {
			inner = protowire.AppendTag(inner, 1, protowire.BytesType)
			inner = protowire.AppendString(inner, r.extensionsOf)
		}
		if len(r.extensionNumbers) > 0 {
			var packed []byte
			for _, n := range r.extensionNumbers {
				packed = protowire.AppendVarint(packed, uint64(int64(n)))
			}
			inner = protowire.AppendTag(inner, 2, protowire.BytesType)
			inner = protowire.AppendBytes(inner, packed)
		}
	case listServicesAnswer:
		for _, name := range r.services {
			var svc []byte
			svc = protowire.AppendTag(svc, 1, protowire.BytesType)
			svc = protowire.AppendString(svc, name)
			inner = protowire.AppendTag(inner, 1, protowire.BytesType)
			inner = protowire.AppendBytes(inner, svc)
		}
	case errorAnswer:
		if r.errCode != 0 {
			inner = protowire.AppendTag(inner, 1, protowire.VarintType)
			inner = protowire.AppendVarint(inner, uint64(int64(r.errCode)))
		}
		if r.errMessage != "" {
			inner = protowire.AppendTag(inner, 2, protowire.BytesType)
			inner = protowire.AppendString(inner, r.errMessage)
		}
	default:
		return b
	}
	b = protowire.AppendTag(b, protowire.Number(r.kind), protowire.BytesType)
	return protowire.AppendBytes(b, inner)
}

// binaryCodec is connect-go's "proto" codec for request and response.
type binaryCodec struct{}

func (binaryCodec) Name() string { return "proto" }

func (binaryCodec) Marshal(v any) ([]byte, error) {
	r, ok := v.(*response)
	if !ok {
		return nil, fmt.Errorf("reflection: cannot encode %T", v)
	}
	return r.marshal(), nil
}

func (binaryCodec) Unmarshal(b []byte, v any) error {
	q, ok := v.(*request)
	if !ok {
		return fmt.Errorf("reflection: cannot decode into %T", v)
	}
	return q.unmarshal(b)
}

// jsonCodec takes the place of connect-go's default JSON codec, which only
// handles generated messages: reflection clients speak protobuf binary.
type jsonCodec struct{}

var errJSON = errors.New("reflection: only the protobuf binary encoding is served")

func (jsonCodec) Name() string                { return "json" }
func (jsonCodec) Marshal(any) ([]byte, error) { return nil, errJSON }
func (jsonCodec) Unmarshal([]byte, any) error { return errJSON }
