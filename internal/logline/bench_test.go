//go:build unix

package logline

import (
	"fmt"
	"io"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/rs/zerolog"
	"github.com/vmre/vmre/logtime"
)

// BenchmarkReaderLine: parsing and logging one 128-byte and one 1 KiB
// line of each format (as the flood benchmark writes them) into a
// discarding logger with the engine's time hook, without the pipe. Beside
// the wall time it reports cpu-ns/op, the process's user and system CPU per
// line, which a loaded machine disturbs far less.
func BenchmarkReaderLine(b *testing.B) {
	for _, bc := range []struct{ name, prefix, suffix string }{
		{"plain", "", ""},
		{"zap-console", "[12-06|21:46:25.946] \x1b[0;33mWARN\x1b[0;0m <X Chain> vm/vm.go:252 ", ` {"height": 42}`},
		{"geth", "WARN [12-06|21:46:27.100] ", " peer=5a1c0e n=42"},
		{"json", `{"level":"warn","ts":1796589990.5,"logger":"vm","msg":"`, `","height":42}`},
	} {
		for _, size := range []int{128, 1024} {
			line := bc.prefix + "~flood~ 000000042 "
			line += strings.Repeat("x", size-1-len(line)-len(bc.suffix)) + bc.suffix
			b.Run(fmt.Sprintf("%s/%d", bc.name, size), func(b *testing.B) {
				log := zerolog.New(io.Discard).Hook(&logtime.Hook{}).With().Str("vm", "vm").Int("pid", 7).Logger()
				br := NewBridge(Options{Log: log})
				r := br.Reader(Stdout, nil)
				r.setNow(time.Now())
				raw := []byte(line)
				b.SetBytes(int64(len(raw) + 1))
				cpu0 := processCPU()
				for b.Loop() {
					r.emit(raw, false, nil)
				}
				b.ReportMetric(float64(processCPU()-cpu0)/float64(b.N), "cpu-ns/op")
			})
		}
	}
}

// processCPU is the user and system CPU time this process has used, in
// nanoseconds.
func processCPU() int64 {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return ru.Utime.Nano() + ru.Stime.Nano()
}
