package main

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"sync"
	"sync/atomic"
	"time"
)

var floodMarker = []byte("~flood~ ")

// meter wraps the sink of an output path. It records the time of the first
// write and, once the expected amount has gone through, the time of the
// last and closes done. It counts bytes, or (for vmre's structured logger,
// which writes one event per Write) payload lines: events that carry the
// flood marker.
type meter struct {
	w          io.Writer
	countLines bool
	want       int64
	n          atomic.Int64
	first      atomic.Int64
	last       atomic.Int64
	once       sync.Once
	done       chan struct{}
}

func newMeter(w io.Writer, countLines bool, want int64) *meter {
	return &meter{w: w, countLines: countLines, want: want, done: make(chan struct{})}
}

func (m *meter) Write(p []byte) (int, error) {
	now := time.Now().UnixNano()
	m.first.CompareAndSwap(0, now)
	n, err := m.w.Write(p)
	var add int64
	if m.countLines {
		if bytes.Contains(p, floodMarker) {
			add = 1
		}
	} else {
		add = int64(n)
	}
	if add != 0 && m.n.Add(add) >= m.want {
		m.last.Store(time.Now().UnixNano())
		m.once.Do(func() { close(m.done) })
	}
	return n, err
}

func (m *meter) Close() error { return nil }

func (m *meter) elapsed() time.Duration { return time.Duration(m.last.Load() - m.first.Load()) }

// checkFloodFile reads a log file and checks that the flood lines 0..n-1
// are all there, in order. It returns how many are missing.
func checkFloodFile(path string, n int64) (int64, error) {
	f, err := os.Open(path)
	if err != nil {
		return 0, err
	}
	defer f.Close()
	r := bufio.NewReaderSize(f, 1<<20)
	var next int64
	for {
		line, err := r.ReadSlice('\n')
		if i := bytes.Index(line, floodMarker); i >= 0 && len(line) >= i+len(floodMarker)+9 {
			seq, perr := strconv.ParseInt(string(line[i+len(floodMarker):i+len(floodMarker)+9]), 10, 64)
			if perr == nil {
				if seq != next {
					return 0, fmt.Errorf("%s: line %d where %d was expected", path, seq, next)
				}
				next++
			}
		}
		if errors.Is(err, bufio.ErrBufferFull) {
			for errors.Is(err, bufio.ErrBufferFull) {
				_, err = r.ReadSlice('\n')
			}
		}
		if err == io.EOF {
			break
		}
		if err != nil {
			return 0, err
		}
	}
	return n - next, nil
}

// benchFlood measures the output bridge: a plugin that, once handshaken,
// writes floodBytes of numbered lines on stdout. vmre turns every line into
// a zerolog JSON event written to a file; avalanchego copies the raw bytes
// into its file logger (the VM logger's Write); the floor is the parent
// reading the raw pipe into io.Discard. Throughput counts plugin payload
// bytes from the first write reaching the sink to the last.
func benchFlood(ctx context.Context, e *env) error {
	for _, lineLen := range e.o.floodLines {
		lines := e.o.floodBytes / int64(lineLen)
		payload := lines * int64(lineLen)
		args := []string{strconv.FormatInt(payload, 10), strconv.Itoa(lineLen)}
		tput := newRow(fmt.Sprintf("output bridge, %d MiB of %d-byte lines -> file (floor: raw pipe -> io.Discard)", payload>>20, lineLen), "MiB/s")
		tput.higherBetter = true
		lost := newRow(fmt.Sprintf("  lines lost of %d", lines), "lines")

		runVmre := func() error {
			path := filepath.Join(e.tmp, "flood-vmre.log")
			f, err := os.Create(path)
			if err != nil {
				return err
			}
			defer os.Remove(path)
			m := newMeter(f, true, lines)
			vm := newVmreEngine(e.ava, m, 10*time.Second, 5*time.Second)
			p, _, err := vm.launch(ctx, append([]string{"flood"}, args...)...)
			if err != nil {
				f.Close()
				return fmt.Errorf("vmre flood launch: %w", err)
			}
			select {
			case <-p.Done():
			case <-time.After(5 * time.Minute):
			}
			p.Stop(ctx)
			select {
			case <-m.done:
			case <-time.After(10 * time.Second):
			}
			f.Close()
			missing, err := checkFloodFile(path, lines)
			if err != nil {
				return err
			}
			lost.add(colVmre, float64(missing))
			if missing == 0 {
				tput.add(colVmre, float64(payload)/(1<<20)/m.elapsed().Seconds())
			}
			return nil
		}
		runAva := func() error {
			path := filepath.Join(e.tmp, "flood-ava.log")
			f, err := os.Create(path)
			if err != nil {
				return err
			}
			defer os.Remove(path)
			m := newMeter(f, false, payload)
			av := newAvaEngine(e.ava, m, 10*time.Second)
			s, err := av.launchWith(ctx, av.log, av.log, append([]string{"flood"}, args...)...)
			if err != nil {
				f.Close()
				return fmt.Errorf("avalanchego flood launch: %w", err)
			}
			select {
			case <-m.done:
			case <-time.After(5 * time.Minute):
			}
			s.Stop(ctx)
			f.Close()
			missing, err := checkFloodFile(path, lines)
			if err != nil {
				return err
			}
			lost.add(colAva, float64(missing))
			if missing == 0 {
				tput.add(colAva, float64(payload)/(1<<20)/m.elapsed().Seconds())
			}
			return nil
		}
		runFloor := func() error {
			m := newMeter(io.Discard, false, payload)
			cmd := exec.Command(e.ava, append([]string{"flood-raw"}, args...)...)
			out, err := cmd.StdoutPipe()
			if err != nil {
				return err
			}
			if err := cmd.Start(); err != nil {
				return err
			}
			_, _ = io.Copy(struct{ io.Writer }{m}, out)
			if err := cmd.Wait(); err != nil {
				return fmt.Errorf("floor flood: %w", err)
			}
			tput.add(colFloor, float64(payload)/(1<<20)/m.elapsed().Seconds())
			lost.add(colFloor, float64(lines-m.n.Load()/int64(lineLen)))
			return nil
		}
		for i := range e.o.floodRuns {
			if err := rotate(i, runVmre, runAva, runFloor); err != nil {
				return err
			}
			e.progress("flood %d: run %d/%d", lineLen, i+1, e.o.floodRuns)
		}
		tput.check(">= 600 MiB/s, zero lines lost", tput.p50(colVmre) >= 600 && len(lost.vals[colVmre]) > 0 && lost.vals[colVmre].pct(100) == 0)
		e.rows = append(e.rows, tput, lost)
	}
	return nil
}
