package logsink

import (
	"bufio"
	"os"
	"runtime"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
	"unsafe"

	"github.com/rs/zerolog"
)

// BenchmarkWriter: one 1.2 KiB event (a 1 KiB plugin line as zerolog
// JSON) into a file, through a Writer and through a bufio.Writer of the
// same size under a mutex. thread-cpu-ns/op is the logging goroutine's own
// CPU (its thread is locked): what the goroutine reading a plugin's pipe
// pays per line, which a loaded machine disturbs far less than the wall
// time. The
// file goes to /dev/shm when there is one, as the flood benchmark's.
func BenchmarkWriter(b *testing.B) {
	ev := []byte(`{"level":"warn","vm":"bench","pid":12345,"stream":"stdout","time":"2026-11-22T10:00:00.000Z","message":"` + strings.Repeat("x", 1024) + `"}` + "\n")
	dir := b.TempDir()
	if fi, err := os.Stat("/dev/shm"); err == nil && fi.IsDir() {
		dir = "/dev/shm"
	}
	for _, name := range []string{"logsink", "bufio"} {
		b.Run(name, func(b *testing.B) {
			f, err := os.CreateTemp(dir, "logsink-bench-")
			if err != nil {
				b.Fatal(err)
			}
			defer os.Remove(f.Name())
			defer f.Close()
			var w zerolog.LevelWriter
			var closer func() error
			if name == "logsink" {
				lw := New(f, DefaultLimit, DefaultInterval)
				w, closer = lw, lw.Close
			} else {
				bw := &lockedBufio{w: bufio.NewWriterSize(f, DefaultLimit)}
				w, closer = zerolog.LevelWriterAdapter{Writer: bw}, bw.Flush
			}
			runtime.LockOSThread()
			defer runtime.UnlockOSThread()
			b.SetBytes(int64(len(ev)))
			cpu0 := threadCPU()
			for b.Loop() {
				if _, err := w.WriteLevel(zerolog.InfoLevel, ev); err != nil {
					b.Fatal(err)
				}
			}
			b.ReportMetric(float64(threadCPU()-cpu0)/float64(b.N), "thread-cpu-ns/op")
			if err := closer(); err != nil {
				b.Fatal(err)
			}
		})
	}
}

type lockedBufio struct {
	mu sync.Mutex
	w  *bufio.Writer
}

func (l *lockedBufio) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.w.Write(p)
}

func (l *lockedBufio) Flush() error {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.w.Flush()
}

// threadCPU is the calling thread's CPU time.
func threadCPU() time.Duration {
	var ts syscall.Timespec
	const clockThreadCPUTimeID = 3
	syscall.Syscall(syscall.SYS_CLOCK_GETTIME, clockThreadCPUTimeID, uintptr(unsafe.Pointer(&ts)), 0)
	return time.Duration(ts.Nano())
}
