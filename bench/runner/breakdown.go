package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strconv"
	"strings"
	"time"

	"github.com/ava-labs/avalanchego/utils/logging"
	"github.com/vmre/vmre/internal/syncbuf"
	"github.com/vmre/vmre/subprocess"
)

// traceTimes is what the serve-trace plugin reports on stderr.
type traceTimes struct{ main, sent, answered time.Time }

func parseTrace(text string) (traceTimes, bool) {
	i := strings.Index(text, "trace ")
	if i < 0 {
		return traceTimes{}, false
	}
	var t traceTimes
	n := 0
	for _, f := range strings.Fields(text[i+len("trace "):]) {
		k, v, ok := strings.Cut(f, "=")
		if !ok {
			continue
		}
		ns, err := strconv.ParseInt(strings.Trim(v, `"\`), 10, 64)
		if err != nil {
			continue
		}
		switch k {
		case "main":
			t.main = time.Unix(0, ns)
			n++
		case "sent":
			t.sent = time.Unix(0, ns)
			n++
		case "answered":
			t.answered = time.Unix(0, ns)
			n++
		}
	}
	return t, n == 3
}

// benchBreakdown splits launch -> handshake into its parts with timestamps
// the plugin takes (wall clock, shared by both processes): the process
// start (Bootstrap called -> plugin's main, i.e. fork/exec, runtime and
// package init), the plugin's own setup (main -> Initialize sent), and the
// handshake call (sent -> Bootstrap returns in the engine; sent -> answer
// received in the plugin).
func benchBreakdown(ctx context.Context, e *env) error {
	av := newAvaEngine(e.ava, logging.Discard, 10*time.Second)
	vm := newVmreEngine(e.ava, io.Discard, 10*time.Second, 5*time.Second)

	start := newRow("launch breakdown: Bootstrap called -> plugin main() (fork/exec, runtime + package init)", "ms")
	setup := newRow("  plugin main() -> Initialize sent (plugin's own setup)", "ms")
	ret := newRow("  Initialize sent -> Bootstrap returns (engine side of the handshake)", "ms")
	ans := newRow("  Initialize sent -> answer received (plugin side)", "ms")
	add := func(col string, t0, t1 time.Time, t traceTimes) {
		start.add(col, ms(t.main.Sub(t0)))
		setup.add(col, ms(t.sent.Sub(t.main)))
		ret.add(col, ms(t1.Sub(t.sent)))
		ans.add(col, ms(t.answered.Sub(t.sent)))
	}

	runVmre := func(rec bool) error {
		got := make(chan traceTimes, 1)
		cfg := vm.cfg
		cfg.OnOutput = func(l *subprocess.Line) {
			if t, ok := parseTrace(string(l.Text)); ok {
				select {
				case got <- t:
				default:
				}
			}
		}
		cmd := subprocess.NewCmd(e.ava, "serve-trace")
		t0 := time.Now()
		p, err := subprocess.Bootstrap(ctx, cmd, &cfg)
		t1 := time.Now()
		if err != nil {
			return fmt.Errorf("vmre: %w", err)
		}
		defer p.Stop(ctx)
		select {
		case t := <-got:
			if rec {
				add(colVmre, t0, t1, t)
			}
		case <-time.After(2 * time.Second):
			return errors.New("vmre: no trace line from the plugin")
		}
		return nil
	}
	runAva := func(rec bool) error {
		var stderr syncbuf.Buffer
		t0 := time.Now()
		s, err := av.launchWith(ctx, io.Discard, &stderr, "serve-trace")
		t1 := time.Now()
		if err != nil {
			return fmt.Errorf("avalanchego: %w", err)
		}
		defer s.Stop(ctx)
		deadline := time.Now().Add(2 * time.Second)
		for {
			if t, ok := parseTrace(stderr.String()); ok {
				if rec {
					add(colAva, t0, t1, t)
				}
				return nil
			}
			if time.Now().After(deadline) {
				return errors.New("avalanchego: no trace line from the plugin")
			}
			time.Sleep(time.Millisecond)
		}
	}
	runs := max(20, e.o.runs/2)
	for i := range warmups + runs {
		rec := i >= warmups
		if err := rotate(i, func() error { return runVmre(rec) }, func() error { return runAva(rec) }); err != nil {
			return err
		}
	}
	e.rows = append(e.rows, start, setup, ret, ans)
	return nil
}
