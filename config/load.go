// Package config reads the configuration file of `vmre run --config`: the
// runtimes an engine runs, in the vmre.v1.Config schema
// (proto/vmre/v1/config.proto) written as YAML or JSON. [Load] parses and
// validates a whole file before anything may start; [Diff] says what a
// reload changes; a [Runner] runs a file's runtimes on an engine and
// reloads it.
//
// The package is public so that a program embedding the engine can accept
// the same file, with the same errors, as the vmre command.
package config

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"

	"github.com/vmre/vmre"
	vmrev1 "github.com/vmre/vmre/gen/vmre/v1"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/reflect/protoreflect"
	"sigs.k8s.io/yaml"
)

// maxFileBytes bounds a configuration file: thousands of runtimes fit.
const maxFileBytes = 4 << 20

// maxReported is how many field errors one load reports at most.
const maxReported = 20

// File is a loaded, validated configuration file. It is a value: nothing
// changes it after [Load] returns.
type File struct {
	// Path is the file's path as given to [Load].
	Path string
	// Runtimes are the file's runtimes in file order, names unique.
	Runtimes []Runtime
}

// Lookup returns the runtime named name.
func (f *File) Lookup(name string) (Runtime, bool) {
	i := slices.IndexFunc(f.Runtimes, func(r Runtime) bool { return r.Name == name })
	if i < 0 {
		return Runtime{}, false
	}
	return f.Runtimes[i], true
}

// Load reads, parses and validates the file at path. It checks everything
// it can without starting a process (the plugin binaries are checked at
// launch) and reports every bad field it finds, each as
// "PATH: FIELD: REASON" (`vmre.yaml: runtimes[1].restart.policy: "sometimes"
// is not one of never, on-failure, always`). Errors wrap
// [vmre.ErrInvalidConfig], or the [os] error when the file cannot be read.
// Relative plugin paths are resolved against the file's directory.
func Load(path string) (*File, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("read config: %w", err)
	}
	defer f.Close()
	var buf bytes.Buffer
	if _, err := buf.ReadFrom(io.LimitReader(f, maxFileBytes+1)); err != nil {
		return nil, fmt.Errorf("read config: %w", err)
	}
	if buf.Len() > maxFileBytes {
		return nil, fmt.Errorf("%w: %s: larger than %d bytes", vmre.ErrInvalidConfig, path, maxFileBytes)
	}
	return Parse(path, buf.Bytes())
}

// Parse is [Load] for a file already read: path names it in errors and
// anchors relative plugin paths.
func Parse(path string, data []byte) (*File, error) {
	msg, err := decode(data)
	if err != nil {
		return nil, fileError(path, err)
	}
	runtimes, err := convert(msg, anchorDir(path))
	if err != nil {
		return nil, fileError(path, err)
	}
	return &File{Path: path, Runtimes: runtimes}, nil
}

// anchorDir is the directory that anchors the relative plugin paths of the
// config file at path: absolute, so that a path names the same file
// whatever the engine's working directory, and so that "./plugin" in a
// file named "vmre.yaml" stays a path rather than becoming "plugin", a
// name looked up in PATH. Without a working directory it is the file's
// directory as given.
func anchorDir(path string) string {
	dir := filepath.Dir(path)
	if abs, err := filepath.Abs(dir); err == nil {
		return abs
	}
	return dir
}

// decode reads YAML or JSON into a vmrev1.Config. The document is first
// checked against the schema with field paths (protojson's own errors name
// neither the runtime nor a YAML position), then decoded by protojson.
func decode(data []byte) (*vmrev1.Config, error) {
	js, err := yaml.YAMLToJSONStrict(data)
	if err != nil {
		return nil, fieldErr("", "%s", err.Error())
	}
	dec := json.NewDecoder(bytes.NewReader(js))
	dec.UseNumber()
	var doc any
	if err := dec.Decode(&doc); err != nil {
		return nil, fieldErr("", "%s", err.Error())
	}
	if doc == nil {
		return nil, fieldErr("", "the file is empty; want a mapping with runtimes")
	}
	var errs []error
	checkMessage(&errs, "", doc, (&vmrev1.Config{}).ProtoReflect().Descriptor())
	if len(errs) > 0 {
		return nil, errors.Join(errs...)
	}
	var msg vmrev1.Config
	if err := protojson.Unmarshal(js, &msg); err != nil {
		return nil, fieldErr("", "%s", err.Error())
	}
	return &msg, nil
}

// checkMessage checks that v, the JSON at path, has the shape of md:
// known keys only, each holding the JSON kind its field needs.
func checkMessage(errs *[]error, path string, v any, md protoreflect.MessageDescriptor) {
	obj, ok := v.(map[string]any)
	if !ok {
		add(errs, path, "want a mapping, got %s", kindOf(v))
		return
	}
	keys := make([]string, 0, len(obj))
	for k := range obj {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	for _, key := range keys {
		val := obj[key]
		at := join(path, key)
		fd := md.Fields().ByTextName(key)
		if fd == nil {
			add(errs, at, "unknown field; want one of %s", fieldNames(md))
			continue
		}
		if val == nil {
			continue // null: unset
		}
		switch {
		case fd.IsMap():
			m, ok := val.(map[string]any)
			if !ok {
				add(errs, at, "want a mapping, got %s", kindOf(val))
				continue
			}
			for k, mv := range m {
				checkValue(errs, at+"."+k, mv, fd.MapValue())
			}
		case fd.IsList():
			list, ok := val.([]any)
			if !ok {
				add(errs, at, "want a list, got %s", kindOf(val))
				continue
			}
			for i, item := range list {
				checkValue(errs, at+"["+strconv.Itoa(i)+"]", item, fd)
			}
		default:
			checkValue(errs, at, val, fd)
		}
	}
}

func checkValue(errs *[]error, path string, v any, fd protoreflect.FieldDescriptor) {
	switch fd.Kind() {
	case protoreflect.MessageKind:
		checkMessage(errs, path, v, fd.Message())
	case protoreflect.StringKind:
		if _, ok := v.(string); !ok {
			add(errs, path, "want a string, got %s (quote it)", kindOf(v))
		}
	case protoreflect.BoolKind:
		if _, ok := v.(bool); !ok {
			add(errs, path, "want true or false, got %s", kindOf(v))
		}
	case protoreflect.Uint32Kind:
		// -1 and "unlimited" are what people try for no limit.
		hint := ""
		if fd.FullName() == "vmre.v1.RestartConfig.max_restarts" {
			hint = "; for no limit, leave it out and set unlimited_restarts: true"
		}
		n, ok := v.(json.Number)
		if !ok {
			add(errs, path, "want a number, got %s%s", kindOf(v), hint)
			return
		}
		if _, err := strconv.ParseUint(n.String(), 10, 32); err != nil {
			add(errs, path, "%s is not a whole number from 0 to %d%s", n, uint32(1<<32-1), hint)
		}
	default:
		// The schema uses no other kinds; protojson checks them if it ever does.
	}
}

func kindOf(v any) string {
	switch v := v.(type) {
	case nil:
		return "null"
	case map[string]any:
		return "a mapping"
	case []any:
		return "a list"
	case string:
		return strconv.Quote(v)
	case json.Number:
		return "the number " + v.String()
	case bool:
		return strconv.FormatBool(v)
	default:
		return fmt.Sprintf("%T", v)
	}
}

func fieldNames(md protoreflect.MessageDescriptor) string {
	names := make([]string, md.Fields().Len())
	for i := range names {
		names[i] = string(md.Fields().Get(i).Name())
	}
	return strings.Join(names, ", ")
}

func join(path, key string) string {
	if path == "" {
		return key
	}
	return path + "." + key
}

// fieldError is one bad field: its path in the document ("" for the whole
// file) and the reason.
type fieldError struct {
	path, reason string
}

func (e *fieldError) Error() string {
	if e.path == "" {
		return e.reason
	}
	return e.path + ": " + e.reason
}

func fieldErr(path, format string, args ...any) error {
	return &fieldError{path: path, reason: fmt.Sprintf(format, args...)}
}

// add appends a field error, up to maxReported of them.
func add(errs *[]error, path, format string, args ...any) {
	if len(*errs) < maxReported {
		*errs = append(*errs, fieldErr(path, format, args...))
	}
}

// fileError prefixes every field error in err with the file's path and
// classifies the result as [vmre.ErrInvalidConfig].
func fileError(path string, err error) error {
	var lines []string
	var joined interface{ Unwrap() []error }
	if errors.As(err, &joined) {
		for _, e := range joined.Unwrap() {
			lines = append(lines, path+": "+e.Error())
		}
	} else {
		lines = append(lines, path+": "+err.Error())
	}
	return fmt.Errorf("%w: %s", vmre.ErrInvalidConfig, strings.Join(lines, "\n"))
}
