package fdwait_test

import (
	"os"
	"testing"

	"github.com/vmre/vmre/internal/fdwait"
	"go.uber.org/goleak"
)

// A watch wakes once per readiness and again only after Rearm; once the
// last descriptor is unwatched, the waiter's goroutine ends. Not
// parallel: it checks that the shared waiter's goroutine has ended.
func TestWatchRearmUnwatch(t *testing.T) {
	w := fdwait.Shared()
	if w == nil {
		t.Fatal("no waiter on Linux")
	}
	r, wr, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	defer wr.Close()
	rc, err := r.SyscallConn()
	if err != nil {
		t.Fatal(err)
	}
	var fd int
	if err := rc.Control(func(u uintptr) { fd = int(u) }); err != nil {
		t.Fatal(err)
	}
	wakes := make(chan bool, 4)
	if err := w.Watch(fd, func(ok bool) { wakes <- ok }); err != nil {
		t.Fatal(err)
	}
	if err := w.Watch(fd, func(bool) {}); err == nil {
		t.Error("a second watch of the same descriptor was accepted")
	}
	buf := make([]byte, 16)
	for i := range 3 {
		if _, err := wr.Write([]byte("x")); err != nil {
			t.Fatal(err)
		}
		if ok := <-wakes; !ok {
			t.Fatalf("wake %d reported a failed waiter", i)
		}
		if _, err := r.Read(buf); err != nil {
			t.Fatal(err)
		}
		if err := w.Rearm(fd); err != nil {
			t.Fatal(err)
		}
	}
	w.Unwatch(fd)
	if err := w.Rearm(fd); err == nil {
		t.Error("Rearm of an unwatched descriptor succeeded")
	}
	goleak.VerifyNone(t)
	select {
	case <-wakes:
		t.Error("a wake ran after Unwatch")
	default:
	}
}
