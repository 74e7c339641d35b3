package api

import (
	"fmt"
	"sync"

	"connectrpc.com/connect"
	"github.com/vmre/vmre/engine"
	vmrev1 "github.com/vmre/vmre/gen/vmre/v1"
	"google.golang.org/protobuf/proto"
)

// A change goes to every watcher. Converting it to its message and
// marshalling that once per watcher cost a quarter of the server's CPU per
// delivery with 1,000 watchers in a profile, so each change
// is converted once and its message shared (messages are only read once
// built), and the binary codec below writes the bytes marshalled once.

// sharedChangeSlots is how many recent changes keep their shared message.
// A watcher takes a change and sends it at once, so only changes made
// while it sends can push it out; a message no longer here is simply
// marshalled again.
const sharedChangeSlots = 64

// sharedChanges holds the shared messages of the latest changes.
type sharedChanges struct {
	engine engineInfo // the engine's, on every message

	mu    sync.Mutex
	slots [sharedChangeSlots]*sharedChange // by Seq modulo the size
	byMsg map[*vmrev1.WatchRuntimesResponse]*sharedChange
}

// sharedChange is one change's message and, once a watcher has needed
// them, its protobuf bytes.
type sharedChange struct {
	seq  uint64
	msg  *vmrev1.WatchRuntimesResponse
	once sync.Once
	wire []byte
	err  error
}

func newSharedChanges(engine engineInfo) *sharedChanges {
	return &sharedChanges{engine: engine, byMsg: make(map[*vmrev1.WatchRuntimesResponse]*sharedChange, sharedChangeSlots)}
}

// message returns c's message, shared with every watcher that sends the
// same change. A snapshot (Seq 0) is a watcher's own and is not shared.
func (s *sharedChanges) message(c engine.Change) *vmrev1.WatchRuntimesResponse {
	if c.Seq == 0 {
		return changeToProto(c, s.engine)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	slot := &s.slots[c.Seq%sharedChangeSlots]
	if sc := *slot; sc != nil {
		if sc.seq == c.Seq {
			return sc.msg
		}
		delete(s.byMsg, sc.msg)
	}
	sc := &sharedChange{seq: c.Seq, msg: changeToProto(c, s.engine)}
	*slot = sc
	s.byMsg[sc.msg] = sc
	return sc.msg
}

// wire returns the protobuf bytes of a shared message, marshalled by the
// first caller, or false for any other message. The bytes are shared:
// callers copy them and never write to them.
func (s *sharedChanges) wire(msg *vmrev1.WatchRuntimesResponse) ([]byte, bool) {
	s.mu.Lock()
	sc := s.byMsg[msg]
	s.mu.Unlock()
	if sc == nil {
		return nil, false
	}
	sc.once.Do(func() { sc.wire, sc.err = proto.Marshal(sc.msg) })
	return sc.wire, sc.err == nil
}

// protoCodec is connect-go's protobuf binary codec ("proto"), except that
// a shared change message is written from its bytes marshalled once.
type protoCodec struct{ shared *sharedChanges }

var _ connect.Codec = protoCodec{}

func (protoCodec) Name() string { return "proto" }

// IsBinary reports that the encoding is binary, as connect-go's is.
func (protoCodec) IsBinary() bool { return true }

func (c protoCodec) Marshal(msg any) ([]byte, error) { return c.MarshalAppend(nil, msg) }

// MarshalAppend appends msg's protobuf encoding to dst.
func (c protoCodec) MarshalAppend(dst []byte, msg any) ([]byte, error) {
	if r, ok := msg.(*vmrev1.WatchRuntimesResponse); ok {
		if b, ok := c.shared.wire(r); ok {
			return append(dst, b...), nil
		}
	}
	m, ok := msg.(proto.Message)
	if !ok {
		return nil, fmt.Errorf("%T is not a protobuf message", msg)
	}
	return proto.MarshalOptions{}.MarshalAppend(dst, m)
}

// MarshalStable marshals msg with deterministic field order.
func (protoCodec) MarshalStable(msg any) ([]byte, error) {
	m, ok := msg.(proto.Message)
	if !ok {
		return nil, fmt.Errorf("%T is not a protobuf message", msg)
	}
	return proto.MarshalOptions{Deterministic: true}.Marshal(m)
}

func (protoCodec) Unmarshal(data []byte, msg any) error {
	m, ok := msg.(proto.Message)
	if !ok {
		return fmt.Errorf("%T is not a protobuf message", msg)
	}
	if err := proto.Unmarshal(data, m); err != nil {
		return fmt.Errorf("unmarshal into %T: %w", msg, err)
	}
	return nil
}
