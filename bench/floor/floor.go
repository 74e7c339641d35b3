// Package floor is the flood benchmark's floor engine: what any engine
// that writes each plugin line as a JSON event must do, and nothing
// more. The runner's flood rows and the floodloop program both run it.
package floor

import (
	"bytes"
	"io"
	"os"
	"time"
)

// Frame is the event around each line: the size and keys of vmre's event
// of a zap console line (its message is the line there).
var Frame = [2][]byte{
	[]byte(`{"level":"warn","vm":"bench","pid":12345,"stream":"stdout","logger":"X Chain","caller":"vm/vm.go:252","plugin_time":"2026-12-06T21:46:25.946+00:00","fields":{"height":42},"time":"2026-12-07T12:00:00.123Z","message":"`),
	[]byte("\"}\n"),
}

// Lines reads the pipe as vmre's reader does (grown to 1 MiB, reads into
// 128 KiB, and batched: having emptied the pipe less than 1 ms after its
// last read, it waits 200 us before reading again), splits lines with
// bytes.IndexByte and writes each, in Frame, with one Write to w, until
// EOF or a line longer than its buffer.
func Lines(pipe *os.File, w io.Writer) {
	GrowPipe(pipe)
	in := make([]byte, 128<<10)
	ev := make([]byte, 0, 4<<10)
	have := 0
	var last time.Time
	for {
		n, err := pipe.Read(in[have:])
		if now := time.Now(); n > 0 && n < len(in)-have && now.Sub(last) < time.Millisecond {
			time.Sleep(200 * time.Microsecond)
			last = time.Now()
		} else {
			last = now
		}
		have += n
		data := in[:have]
		for {
			i := bytes.IndexByte(data, '\n')
			if i < 0 {
				break
			}
			ev = append(append(append(ev[:0], Frame[0]...), data[:i]...), Frame[1]...)
			_, _ = w.Write(ev)
			data = data[i+1:]
		}
		have = copy(in, data)
		if err != nil || have == len(in) {
			return
		}
	}
}
