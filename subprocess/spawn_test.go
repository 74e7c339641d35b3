//go:build linux

package subprocess

import (
	"os/exec"
	"runtime"
	"testing"
)

// BenchmarkStart compares starting (and reaping) /bin/true on the spawner
// thread with starting it from the calling goroutine: the difference is
// the price of a parent-death signal that does not depend on the caller's
// thread.
func BenchmarkStart(b *testing.B) {
	b.Run("spawner", func(b *testing.B) {
		for range b.N {
			cmd := exec.Command("/bin/true")
			if err := startCmd(cmd); err != nil {
				b.Fatal(err)
			}
			_ = cmd.Wait()
		}
	})
	b.Run("direct", func(b *testing.B) {
		for range b.N {
			cmd := exec.Command("/bin/true")
			if err := cmd.Start(); err != nil {
				b.Fatal(err)
			}
			_ = cmd.Wait()
		}
	})
}

// BenchmarkSpawnerRoundTrip is the handoff alone: a request to the locked
// spawner goroutine and its answer, without starting anything.
func BenchmarkSpawnerRoundTrip(b *testing.B) {
	reqs := make(chan chan error)
	go func() {
		for errc := range reqs {
			errc <- nil
		}
	}()
	defer close(reqs)
	b.Run("unlocked", func(b *testing.B) {
		for range b.N {
			errc := make(chan error, 1)
			reqs <- errc
			<-errc
		}
	})
	locked := make(chan chan error)
	go func() {
		runtime.LockOSThread()
		defer runtime.UnlockOSThread()
		for errc := range locked {
			errc <- nil
		}
	}()
	defer close(locked)
	b.Run("locked", func(b *testing.B) {
		for range b.N {
			errc := make(chan error, 1)
			locked <- errc
			<-errc
		}
	})
}
