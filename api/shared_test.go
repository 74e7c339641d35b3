package api

import (
	"bytes"
	"sync"
	"testing"
	"time"

	"github.com/vmre/vmre/engine"
	vmrev1 "github.com/vmre/vmre/gen/vmre/v1"
	"google.golang.org/protobuf/proto"
)

var testEngine = engineInfo{instanceID: "test-instance", started: time.Unix(1_700_000_000, 0), version: "v0.0.0-test"}

func testChange(seq uint64) engine.Change {
	return engine.Change{
		Kind:    engine.ChangeUpdated,
		Runtime: engine.Runtime{ID: "r1", Name: "vm", State: engine.StateRunning, Pid: 42, StartedAt: time.Unix(1_800_000_000, 5)},
		Event:   engine.Event{Time: time.Unix(1_800_000_001, 0), State: engine.StateRunning, Message: "handshake complete"},
		Time:    time.Unix(1_800_000_001, 7),
		Seq:     seq,
	}
}

// TestSharedChanges: the watchers of one change share one message, other
// changes and snapshots get their own, and the codec writes exactly what
// proto.Marshal writes, also for a message pushed out of the slots.
func TestSharedChanges(t *testing.T) {
	t.Parallel()
	s := newSharedChanges(testEngine)
	codec := protoCodec{shared: s}
	first := s.message(testChange(1))
	if s.message(testChange(1)) != first {
		t.Error("the same change (seq 1) gave two messages")
	}
	if s.message(testChange(2)) == first {
		t.Error("changes 1 and 2 share a message")
	}
	snap := engine.Change{Kind: engine.ChangeSnapshot, Snapshot: []engine.Runtime{{ID: "r1"}}}
	// Snapshots are each watcher's own: encoding the same one twice gives
	// two messages.
	if a, b := s.message(snap), s.message(snap); a == b {
		t.Error("two snapshots share a message")
	}
	if !proto.Equal(first, changeToProto(testChange(1), testEngine)) {
		t.Errorf("shared message %v, want %v", first, changeToProto(testChange(1), testEngine))
	}

	marshalled := func(msg *vmrev1.WatchRuntimesResponse) []byte {
		t.Helper()
		b, err := codec.MarshalAppend([]byte("prefix"), msg)
		if err != nil {
			t.Fatal(err)
		}
		want, err := proto.Marshal(msg)
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(b, append([]byte("prefix"), want...)) {
			t.Errorf("MarshalAppend = %x, want prefix + %x", b, want)
		}
		return b
	}
	if _, ok := s.wire(first); !ok {
		t.Fatal("a shared message has no shared bytes")
	}
	marshalled(first)
	marshalled(changeToProto(testChange(9), testEngine)) // never shared

	// sharedChangeSlots changes later, change 1's slot holds another: its
	// message is marshalled like any other, still correctly.
	s.message(testChange(1 + sharedChangeSlots))
	if _, ok := s.wire(first); ok {
		t.Error("a message pushed out of the slots still has shared bytes")
	}
	marshalled(first)
	if len(s.byMsg) > sharedChangeSlots {
		t.Errorf("%d messages kept, want at most %d", len(s.byMsg), sharedChangeSlots)
	}

	var back vmrev1.WatchRuntimesResponse
	b, _ := codec.Marshal(first)
	if err := codec.Unmarshal(b, &back); err != nil || !proto.Equal(&back, first) {
		t.Errorf("round trip: %v, %v; want %v", &back, err, first)
	}
	if _, err := codec.Marshal("not a message"); err == nil {
		t.Error("Marshal of a string succeeded")
	}
	if err := codec.Unmarshal([]byte{0xff}, &back); err == nil {
		t.Error("Unmarshal of garbage succeeded")
	}
}

// TestSharedChangesConcurrent: many watchers taking and marshalling the
// same changes at once (run with -race) all write the same bytes.
func TestSharedChangesConcurrent(t *testing.T) {
	t.Parallel()
	s := newSharedChanges(testEngine)
	codec := protoCodec{shared: s}
	const watchers, changes = 32, 100
	out := make([][][]byte, watchers)
	var wg sync.WaitGroup
	for w := range watchers {
		wg.Go(func() {
			for seq := range uint64(changes) {
				b, err := codec.MarshalAppend(nil, s.message(testChange(seq+1)))
				if err != nil {
					t.Error(err)
					return
				}
				out[w] = append(out[w], b)
			}
		})
	}
	wg.Wait()
	for w := range watchers {
		if len(out[w]) != changes {
			t.Fatalf("watcher %d marshalled %d changes, want %d", w, len(out[w]), changes)
		}
	}
	for seq := range changes {
		want, _ := proto.Marshal(changeToProto(testChange(uint64(seq)+1), testEngine))
		for w := range watchers {
			if !bytes.Equal(out[w][seq], want) {
				t.Fatalf("watcher %d, change %d: %x, want %x", w, seq+1, out[w][seq], want)
			}
		}
	}
}
