package main

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"time"

	"github.com/rs/zerolog"
	"github.com/vmre/vmre/internal/handshaketest"
	"github.com/vmre/vmre/subprocess"
)

// benchHandshakeFlood measures a tokenless avalanchego-style plugin's
// handshake in vmre's default token-or-peer mode, unflooded and while an
// attacker process (this binary with -hsflood-attacker-of) holds
// -hsflood-conns connections to the launch's handshake port, each calling
// Initialize without a token over and over. The plugin ("avaplugin
// serve-gated") reports the port, the attacker connects and floods, then
// the plugin is let go; the time from then to Bootstrap's return is the
// metric. Unflooded and flooded launches alternate, so both see the same
// machine.
func benchHandshakeFlood(ctx context.Context, e *env) error {
	conns, runs := e.o.hsfloodConns, e.o.hsfloodRuns
	base := newRow("tokenless handshake (avaplugin, token-or-peer): plugin let go -> Bootstrap returns, unflooded", "ms")
	flooded := newRow(fmt.Sprintf("  the same while %d foreign connections call Initialize without a token", conns), "ms")
	cost := newRow("  the engine's CPU time per refused foreign call during the flood", "µs")
	for range runs {
		for _, n := range []int{0, conns} {
			d, perCall, err := gatedHandshake(ctx, e, n)
			if err != nil {
				return fmt.Errorf("%d flooding connections: %w", n, err)
			}
			if n == 0 {
				base.add(colVmre, ms(d))
			} else {
				flooded.add(colVmre, ms(d))
				cost.add(colVmre, us(perCall))
			}
		}
	}
	delta := flooded.p50(colVmre) - base.p50(colVmre)
	flooded.check(fmt.Sprintf("p50 within 200 ms of unflooded (got %+.1f ms)", delta), delta <= 200)
	e.rows = append(e.rows, base, flooded, cost)
	return nil
}

// gatedHandshake launches one gated plugin, floods its handshake port with
// flood connections if flood > 0, lets the plugin go and returns how long
// its handshake took and this process's CPU time per refused foreign call
// from the attacker's start to its end (the plugin's launch included).
func gatedHandshake(ctx context.Context, e *env, flood int) (time.Duration, time.Duration, error) {
	gateR, gateW, err := os.Pipe()
	if err != nil {
		return 0, 0, err
	}
	defer gateW.Close()
	addrc := make(chan string, 1)
	cfg := &subprocess.Config{
		Name:             "hsflood",
		Log:              zerolog.Nop(),
		AcceptedVersions: []uint32{avaProtocolVersion},
		HandshakeTimeout: time.Minute,
		GracefulTimeout:  5 * time.Second,
		HandshakeAuth:    subprocess.HandshakeAuthTokenOrPeer,
		OnOutput: func(l *subprocess.Line) {
			if a, ok := strings.CutPrefix(string(l.Text), "engine-addr "); ok {
				select {
				case addrc <- a:
				default:
				}
			}
		},
	}
	cmd := subprocess.NewCmd(e.ava, "serve-gated")
	cmd.Stdin = gateR
	type result struct {
		p   *subprocess.Process
		err error
	}
	resc := make(chan result, 1)
	go func() {
		p, err := subprocess.Bootstrap(ctx, cmd, cfg)
		resc <- result{p, err}
	}()
	var addr string
	select {
	case addr = <-addrc:
	case r := <-resc:
		gateR.Close()
		return 0, 0, fmt.Errorf("plugin ended before its gate: %w", r.err)
	}
	gateR.Close()

	var cpuStart time.Duration
	var attacker *exec.Cmd
	var attackIn io.WriteCloser
	var attackOut *bufio.Scanner
	if flood > 0 {
		attacker = exec.CommandContext(ctx, os.Args[0], "-hsflood-attacker-of", addr, "-hsflood-conns", strconv.Itoa(flood))
		attacker.Stderr = os.Stderr
		if attackIn, err = attacker.StdinPipe(); err != nil {
			return 0, 0, err
		}
		out, err := attacker.StdoutPipe()
		if err != nil {
			return 0, 0, err
		}
		cpuStart = processCPU()
		if err := attacker.Start(); err != nil {
			return 0, 0, err
		}
		defer func() { _ = attackIn.Close(); _ = attacker.Wait() }()
		attackOut = bufio.NewScanner(out)
		if !attackOut.Scan() || attackOut.Text() != "flooding" {
			return 0, 0, fmt.Errorf("attacker said %q (%v)", attackOut.Text(), attackOut.Err())
		}
	}
	start := time.Now()
	if _, err := io.WriteString(gateW, "go\n"); err != nil {
		return 0, 0, err
	}
	r := <-resc
	took := time.Since(start)
	if r.err != nil {
		return 0, 0, fmt.Errorf("handshake: %w", r.err)
	}
	var perCall time.Duration
	if attacker != nil {
		_ = attackIn.Close()
		if !attackOut.Scan() {
			return 0, 0, fmt.Errorf("attacker ended without its count: %v", attackOut.Err())
		}
		var answers, refusedCalls int
		var secs float64
		if _, err := fmt.Sscanf(attackOut.Text(), "answers %d refused %d seconds %g", &answers, &refusedCalls, &secs); err != nil {
			return 0, 0, fmt.Errorf("attacker said %q: %w", attackOut.Text(), err)
		}
		_ = attacker.Wait()
		if refusedCalls > 0 {
			perCall = (processCPU() - cpuStart) / time.Duration(refusedCalls)
		}
	}
	stopCtx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	r.p.Stop(stopCtx)
	return took, perCall, nil
}

// hsfloodAttacker is the attacker process: conns connections to addr, each
// calling Initialize without a token over and over. It prints "flooding"
// once every connection has had an answer, and when stdin closes "answers
// N refused M seconds S" (answers other than permission_denied come once
// the handshake is done and the port closed).
// It fails if any call was admitted.
func hsfloodAttacker(addr string, conns int) error {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	start := time.Now()
	took := make(chan time.Duration, 1)
	go func() {
		_, _ = io.Copy(io.Discard, os.Stdin)
		took <- time.Since(start)
		cancel()
	}()
	st := handshaketest.Flood(ctx, addr, "", avaProtocolVersion, conns, -1, func() { fmt.Println("flooding") })
	fmt.Printf("answers %d refused %d seconds %g\n", st.Answers, st.Refused, (<-took).Seconds())
	if st.Admitted > 0 {
		return fmt.Errorf("%d foreign calls were admitted", st.Admitted)
	}
	return nil
}
