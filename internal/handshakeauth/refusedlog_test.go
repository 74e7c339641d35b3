package handshakeauth

import (
	"testing"
	"time"
)

func TestRefusedLimiter(t *testing.T) {
	t.Parallel()
	var l refusedLimiter
	t0 := time.Unix(1000, 0)
	for i := range refusedLogBurst {
		if n, ok := l.allow(t0.Add(time.Duration(i) * time.Millisecond)); !ok || n != 0 {
			t.Fatalf("line %d of the first second: allow = %d, %v; want 0, true", i, n, ok)
		}
	}
	for i := range 25 {
		if _, ok := l.allow(t0.Add(500*time.Millisecond + time.Duration(i))); ok {
			t.Fatalf("line %d past the burst was allowed", refusedLogBurst+i)
		}
	}
	if n, ok := l.allow(t0.Add(time.Second)); !ok || n != 25 {
		t.Fatalf("first line of the next second: allow = %d, %v; want 25 left out, true", n, ok)
	}
	if n, ok := l.allow(t0.Add(time.Second + time.Millisecond)); !ok || n != 0 {
		t.Fatalf("second line of the next second: allow = %d, %v; want 0, true", n, ok)
	}
}
