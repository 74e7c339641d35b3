package syncbuf_test

import (
	"strings"
	"sync"
	"testing"

	"github.com/vmre/vmre/internal/syncbuf"
)

// Concurrent writers lose nothing and interleave only whole writes; run
// under -race, a reader between them is safe.
func TestBufferConcurrentWrites(t *testing.T) {
	var b syncbuf.Buffer
	var wg sync.WaitGroup
	for range 8 {
		wg.Go(func() {
			for range 100 {
				_, _ = b.Write([]byte("line\n"))
				_ = b.String()
			}
		})
	}
	wg.Wait()
	if got := b.String(); got != strings.Repeat("line\n", 800) {
		t.Fatalf("got %d bytes, want 800 whole lines", len(got))
	}
}
