// Package reflection serves gRPC server reflection, grpc.reflection.v1 and
// its identical predecessor v1alpha, as Connect handlers, so that grpcurl,
// buf curl and grpc-go's reflection client can list a port's services and
// fetch the descriptors of their files.
//
// It does the job of connectrpc.com/grpcreflect without its cost at
// start-up: that package decodes its embedded descriptor set in a
// package-level variable, in every program that links it, whether or not
// it serves reflection. Here nothing runs before the first request: the
// messages of the reflection protocol are encoded by hand (they are never
// registered, so a program that also links grpc-go's reflection package
// has no registration conflict), and the descriptor of reflection.proto
// itself is built on first use.
//
// Everything here is safe for concurrent use.
package reflection

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"slices"

	"connectrpc.com/connect"
	"github.com/vmre/vmre/internal/rawdesc"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/reflect/protoregistry"
)

// The reflection services' names.
const (
	ServiceV1      = "grpc.reflection.v1.ServerReflection"
	ServiceV1Alpha = "grpc.reflection.v1alpha.ServerReflection"
	method         = "ServerReflectionInfo"
)

// Resolver finds descriptors; [*protoregistry.Files] is one.
type Resolver interface {
	FindFileByPath(path string) (protoreflect.FileDescriptor, error)
	FindDescriptorByName(name protoreflect.FullName) (protoreflect.Descriptor, error)
}

// Reflector answers reflection requests: it lists a fixed set of services
// and describes any file, symbol or extension it can resolve.
type Reflector struct {
	services  []string
	resolvers []Resolver
}

// New returns a Reflector that lists services and resolves names and
// files from resolvers, in order, then from the descriptors of the
// reflection services themselves, then from the global registry
// ([protoregistry.GlobalFiles], and [protoregistry.GlobalTypes] for
// extensions). It copies services.
func New(services []string, resolvers ...Resolver) *Reflector {
	all := append(slices.Clone(resolvers), selfFiles{}, protoregistry.GlobalFiles)
	return &Reflector{services: slices.Clone(services), resolvers: all}
}

// HandlerV1 returns the path of grpc.reflection.v1.ServerReflection and its
// handler. Its one method is a bidirectional stream, so it answers over
// HTTP/2 only (gRPC, or gRPC-Web and Connect where the client streams).
func (r *Reflector) HandlerV1(options ...connect.HandlerOption) (string, http.Handler) {
	return r.handler("/"+ServiceV1+"/", options)
}

// HandlerV1Alpha is [Reflector.HandlerV1] for v1alpha, which has the same
// messages under another package, for older clients.
func (r *Reflector) HandlerV1Alpha(options ...connect.HandlerOption) (string, http.Handler) {
	return r.handler("/"+ServiceV1Alpha+"/", options)
}

func (r *Reflector) handler(path string, options []connect.HandlerOption) (string, http.Handler) {
	opts := append([]connect.HandlerOption{connect.WithCodec(binaryCodec{}), connect.WithCodec(jsonCodec{})}, options...)
	return path, connect.NewBidiStreamHandler(path+method, r.serve, opts...)
}

// serve answers each request of one stream in order. A file is sent once
// per stream: a file asked for is always sent, but the files it imports
// only if this stream has not had them yet.
func (r *Reflector) serve(_ context.Context, stream *connect.BidiStream[request, response]) error {
	sent := make(map[string]bool)
	for {
		req, err := stream.Receive()
		if errors.Is(err, io.EOF) {
			return nil
		}
		if err != nil {
			return err
		}
		resp := &response{validHost: req.host, request: req}
		switch req.kind {
		case fileByFilename:
			resp.setFiles(r.fileByPath(req.name, sent))
		case fileContainingSymbol:
			resp.setFiles(r.fileContainingSymbol(req.name, sent))
		case fileContainingExtension:
			resp.setFiles(r.fileContainingExtension(req.name, req.extension, sent))
		case allExtensionNumbersOfType:
			nums, err := r.extensionNumbers(req.name)
			if err != nil {
				resp.setError(err)
			} else {
				resp.extensionsOf, resp.extensionNumbers, resp.kind = req.name, nums, extensionNumbersAnswer
			}
		case listServices:
			resp.services, resp.kind = r.services, listServicesAnswer
		default:
			return connect.NewError(connect.CodeInvalidArgument, errors.New("reflection request names no query"))
		}
		if err := stream.Send(resp); err != nil {
			return err
		}
	}
}

func (r *Reflector) findFile(path string) (protoreflect.FileDescriptor, error) {
	for _, res := range r.resolvers {
		if fd, err := res.FindFileByPath(path); err == nil {
			return fd, nil
		}
	}
	return nil, fmt.Errorf("file %q: %w", path, protoregistry.NotFound)
}

func (r *Reflector) findName(name protoreflect.FullName) (protoreflect.Descriptor, error) {
	for _, res := range r.resolvers {
		if d, err := res.FindDescriptorByName(name); err == nil {
			return d, nil
		}
	}
	return nil, fmt.Errorf("symbol %q: %w", name, protoregistry.NotFound)
}

func (r *Reflector) fileByPath(path string, sent map[string]bool) ([][]byte, error) {
	fd, err := r.findFile(path)
	if err != nil {
		return nil, err
	}
	return r.withImports(fd, sent)
}

func (r *Reflector) fileContainingSymbol(name string, sent map[string]bool) ([][]byte, error) {
	d, err := r.findName(protoreflect.FullName(name))
	if err != nil {
		return nil, err
	}
	return r.withImports(d.ParentFile(), sent)
}

func (r *Reflector) fileContainingExtension(message string, number int32, sent map[string]bool) ([][]byte, error) {
	ext, err := protoregistry.GlobalTypes.FindExtensionByNumber(protoreflect.FullName(message), protoreflect.FieldNumber(number))
	if err != nil {
		return nil, fmt.Errorf("extension %d of %q: %w", number, message, err)
	}
	return r.withImports(ext.TypeDescriptor().ParentFile(), sent)
}

// extensionNumbers lists the numbers of message's extensions, sorted; a
// message without any is an empty list if the message exists.
func (r *Reflector) extensionNumbers(message string) ([]int32, error) {
	name := protoreflect.FullName(message)
	nums := []int32{}
	protoregistry.GlobalTypes.RangeExtensionsByMessage(name, func(ext protoreflect.ExtensionType) bool {
		nums = append(nums, int32(ext.TypeDescriptor().Number()))
		return true
	})
	if len(nums) == 0 {
		if _, err := r.findName(name); err != nil {
			return nil, err
		}
	}
	slices.Sort(nums)
	return nums, nil
}

// withImports encodes root and every file it imports, directly or not,
// that this stream has not been sent yet; root always comes first and is
// always sent. An import that is only a placeholder (its file is not
// linked) is left out, as no descriptor of it exists here.
func (r *Reflector) withImports(root protoreflect.FileDescriptor, sent map[string]bool) ([][]byte, error) {
	if root == nil || root.IsPlaceholder() {
		return nil, protoregistry.NotFound
	}
	var out [][]byte
	visited := make(map[string]bool)
	queue := []protoreflect.FileDescriptor{root}
	for len(queue) > 0 {
		fd := queue[0]
		queue = queue[1:]
		if fd.IsPlaceholder() || visited[fd.Path()] {
			continue
		}
		visited[fd.Path()] = true
		if fd.Path() == root.Path() || !sent[fd.Path()] {
			sent[fd.Path()] = true
			b, err := r.encode(fd)
			if err != nil {
				return nil, err
			}
			out = append(out, b)
		}
		imports := fd.Imports()
		for i := range imports.Len() {
			queue = append(queue, imports.Get(i).FileDescriptor)
		}
	}
	return out, nil
}

// rawFiles is implemented by a [Resolver] that holds the encoded
// FileDescriptorProto of files it built.
type rawFiles interface {
	RawFile(fd protoreflect.FileDescriptor) ([]byte, bool)
}

// encode returns fd as a FileDescriptorProto: the encoding a resolver
// kept of a file it built, or else the one generated code holds.
func (r *Reflector) encode(fd protoreflect.FileDescriptor) ([]byte, error) {
	for _, res := range r.resolvers {
		if raw, ok := res.(rawFiles); ok {
			if b, ok := raw.RawFile(fd); ok {
				return b, nil
			}
		}
	}
	b, err := rawdesc.Generated(fd)
	if err != nil {
		return nil, fmt.Errorf("encode %s: %w", fd.Path(), err)
	}
	return b, nil
}
