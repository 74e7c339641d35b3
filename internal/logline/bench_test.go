package logline

import (
	"io"
	"strings"
	"testing"
	"time"

	"github.com/rs/zerolog"
	"github.com/vmre/vmre/logtime"
)

// BenchmarkReaderLine: parsing and logging one 128-byte line of each
// format (as the flood benchmark writes them) into a discarding logger with
// the engine's time hook, without the pipe.
func BenchmarkReaderLine(b *testing.B) {
	for _, bc := range []struct{ name, prefix, suffix string }{
		{"plain", "", ""},
		{"zap-console", "[12-06|21:46:25.946] \x1b[0;33mWARN\x1b[0;0m <X Chain> vm/vm.go:252 ", ` {"height": 42}`},
		{"geth", "WARN [12-06|21:46:27.100] ", " peer=5a1c0e n=42"},
		{"json", `{"level":"warn","ts":1796589990.5,"logger":"vm","msg":"`, `","height":42}`},
	} {
		line := bc.prefix + "~flood~ 000000042 "
		line += strings.Repeat("x", 127-len(line)-len(bc.suffix)) + bc.suffix
		b.Run(bc.name, func(b *testing.B) {
			log := zerolog.New(io.Discard).Hook(&logtime.Hook{}).With().Str("vm", "vm").Int("pid", 7).Logger()
			br := NewBridge(Options{Log: log})
			r := br.Reader(Stdout, nil)
			r.setNow(time.Now())
			raw := []byte(line)
			b.SetBytes(int64(len(raw) + 1))
			for b.Loop() {
				r.emit(raw, false)
			}
		})
	}
}
