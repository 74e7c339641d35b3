// Command avaplugin is the benchmark's avalanchego-style VM plugin: a plain
// grpc-go client that reads the engine address from
// AVALANCHE_VM_RUNTIME_ENGINE_ADDR and calls /vm.runtime.Runtime/Initialize
// with protocol version 46, exactly as avalanchego's rpcchainvm.Serve does.
// Both vmre and avalanchego launch this same binary.
//
// Usage: avaplugin MODE [ARGS]
//
//	exit                   exit 0 at once (the fork/exec/wait floor)
//	ready                  print "ready" on stdout, exit 0 on SIGTERM (stop floor)
//	serve                  handshake, serve, exit 0 on SIGTERM
//	serve-trace            serve, and print "trace main=T sent=T answered=T" (unix nanos) on stderr
//	serve-gated            print "engine-addr ADDR" on stdout, wait for a line on stdin, then serve
//	exit-early             print "exit-at <unix-nanos>" on stderr, exit 3 (no handshake)
//	ignore-term            handshake, ignore SIGTERM, run until killed
//	flood BYTES LINELEN [FORMAT]  handshake (unless "flood-raw"), write BYTES of numbered lines on stdout, exit 0
//	flood-raw BYTES LINELEN  the same without a handshake (pipe floor)
//	call-once              one Initialize on a new connection, print "call <ns>" (no serving)
//	call-loop DURATION     2,000 warm-up Initialize calls, then sequential calls for DURATION; print "calls <n>"
package main

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"io"
	"net"
	"os"
	"os/signal"
	"strconv"
	"syscall"
	"time"

	runtimepb "github.com/ava-labs/avalanchego/proto/pb/vm/runtime"
	"github.com/ava-labs/avalanchego/utils/logging"
	"go.uber.org/zap"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
)

// protocolVersion is avalanchego v1.15.0's version.RPCChainVMProtocol.
const protocolVersion = 46

const engineAddrKey = "AVALANCHE_VM_RUNTIME_ENGINE_ADDR"

// mainAt is when main began: after the runtime and every package's init.
var mainAt time.Time

func main() {
	mainAt = time.Now()
	if len(os.Args) < 2 {
		fail("usage: avaplugin MODE")
	}
	switch mode := os.Args[1]; mode {
	case "exit":
		os.Exit(0)
	case "ready":
		term := notifyTerm()
		os.Stdout.WriteString("ready\n")
		<-term
		os.Exit(0)
	case "exit-early":
		fmt.Fprintf(os.Stderr, "exit-at %d\n", time.Now().UnixNano())
		os.Exit(3)
	case "serve":
		term := notifyTerm()
		handshake()
		<-term
		os.Exit(0)
	case "serve-trace":
		term := notifyTerm()
		sent, answered := handshake()
		fmt.Fprintf(os.Stderr, "trace main=%d sent=%d answered=%d\n", mainAt.UnixNano(), sent.UnixNano(), answered.UnixNano())
		<-term
		os.Exit(0)
	case "serve-gated":
		term := notifyTerm()
		fmt.Printf("engine-addr %s\n", os.Getenv(engineAddrKey))
		if _, err := bufio.NewReader(os.Stdin).ReadString('\n'); err != nil {
			fail("read gate: " + err.Error())
		}
		handshake()
		<-term
		os.Exit(0)
	case "ignore-term":
		signal.Ignore(syscall.SIGTERM)
		handshake()
		select {}
	case "flood", "flood-raw":
		if len(os.Args) != 4 && len(os.Args) != 5 {
			fail("usage: avaplugin flood BYTES LINELEN [plain|zap-console|zap-logger|geth|json|hclog-json]")
		}
		format := "plain"
		if len(os.Args) == 5 {
			format = os.Args[4]
		}
		total, err1 := strconv.ParseInt(os.Args[2], 10, 64)
		lineLen, err2 := strconv.Atoi(os.Args[3])
		if err1 != nil || err2 != nil || lineLen < 20 {
			fail("flood: bad BYTES or LINELEN")
		}
		if mode == "flood" {
			handshake()
		}
		flood(total, lineLen, format)
		os.Exit(0)
	case "call-once":
		c := runtimeClient()
		t0 := time.Now()
		initialize(c)
		fmt.Printf("call %d\n", time.Since(t0).Nanoseconds())
	case "call-loop":
		if len(os.Args) != 3 {
			fail("usage: avaplugin call-loop DURATION")
		}
		d, err := time.ParseDuration(os.Args[2])
		if err != nil {
			fail("call-loop: " + err.Error())
		}
		c := runtimeClient()
		for range 2000 {
			initialize(c)
		}
		n := 0
		for end := time.Now().Add(d); time.Now().Before(end); n++ {
			initialize(c)
		}
		fmt.Printf("calls %d\n", n)
	default:
		fail("unknown mode " + mode)
	}
}

func notifyTerm() <-chan os.Signal {
	ch := make(chan os.Signal, 1)
	signal.Notify(ch, syscall.SIGTERM)
	return ch
}

// handshake does what avalanchego's rpcchainvm.Serve does: dial the engine,
// open the VM listener, call Initialize with its address, then serve the VM
// (here an empty gRPC server) on it. Like Serve, it keeps the engine
// connection open. It returns when it sent Initialize and when the answer
// arrived.
func handshake() (sent, answered time.Time) {
	c := runtimeClient()
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		fail("listen: " + err.Error())
	}
	ctx, cancel := context.WithTimeout(context.Background(), initializeTimeout())
	defer cancel()
	sent = time.Now()
	_, err = c.Initialize(ctx, &runtimepb.InitializeRequest{
		ProtocolVersion: protocolVersion,
		Addr:            lis.Addr().String(),
	})
	answered = time.Now()
	if err != nil {
		fail("initialize: " + err.Error())
	}
	srv := grpc.NewServer()
	// Served as avalanchego's rpcchainvm.Serve does, for the engine's
	// liveness probes (vmre's supervise benchmark).
	healthpb.RegisterHealthServer(srv, health.NewServer())
	go func() { _ = srv.Serve(lis) }()
	return sent, answered
}

// floodFormats are the line shapes flood writes, as real plugins write
// them: before and after the numbered message. zap-console is avalanchego's
// console encoder with colour codes and JSON fields; geth is go-ethereum's
// terminal format; json is zap's production encoder; hclog-json is hclog's
// JSON format (keys sorted, as it writes them), which go-plugin's host
// parses.
var floodFormats = map[string][2]string{
	"plain":       {"", ""},
	"zap-console": {"[12-06|21:46:25.946] \x1b[0;33mWARN\x1b[0;0m <X Chain> vm/vm.go:252 ", ` {"height": 42}`},
	"geth":        {"WARN [12-06|21:46:27.100] ", " peer=5a1c0e n=42"},
	"json":        {`{"level":"warn","ts":1796589990.5,"logger":"vm","msg":"`, `","height":42}`},
	"hclog-json":  {`{"@level":"warn","@message":"`, `","@module":"vm","@timestamp":"2026-12-06T21:46:25.946000Z","height":42}`},
}

// flood writes total bytes of lines of lineLen bytes (newline included):
// "~flood~ 000000042 xxxx...\n" inside the format's prefix and suffix. The
// sequence number lets the benchmark check that no line was lost.
func flood(total int64, lineLen int, format string) {
	if format == "zap-logger" {
		floodLogger(total, lineLen)
		return
	}
	ps, ok := floodFormats[format]
	if !ok || len(ps[0])+len(ps[1])+20 > lineLen {
		fail("flood: unknown format or line too short: " + format)
	}
	w := bufio.NewWriterSize(os.Stdout, 64<<10)
	line := make([]byte, 0, lineLen)
	line = append(line, ps[0]...)
	at := len(line)
	line = append(line, "~flood~ 000000000 "...)
	for len(line) < lineLen-1-len(ps[1]) {
		line = append(line, 'x')
	}
	line = append(line, ps[1]...)
	line = append(line, '\n')
	n := total / int64(lineLen)
	for seq := int64(0); seq < n; seq++ {
		v := seq
		for i := at + 16; i >= at+8; i-- {
			line[i] = byte('0' + v%10)
			v /= 10
		}
		if _, err := w.Write(line); err != nil {
			fail("write: " + err.Error())
		}
	}
	if err := w.Flush(); err != nil {
		fail("flush: " + err.Error())
	}
}

// floodLogger writes the flood's lines through avalanchego's own logger,
// set up as rpcchainvm's VM server sets up a VM's: zap's console encoder
// with colour codes, the chain's logger name, the caller, and one write(2)
// per line (rpcchainvm's goes to stderr, this one to stdout, the stream
// the benchmark reads). Each line is a warning with one field, its
// message padded so that the line is lineLen bytes: the format
// zap-console imitates, costing the plugin what it costs a real one.
func floodLogger(total int64, lineLen int) {
	newLog := func(w io.WriteCloser) logging.Logger {
		return logging.NewLogger("<X Chain>", logging.NewWrappedCore(logging.Info, w, logging.Colors.ConsoleEncoder()))
	}
	msg := []byte("~flood~ 000000000 ")
	// The line's length without padding, from one line logged into a
	// buffer: every part but the message has a fixed width.
	var probe bytes.Buffer
	logFlood(newLog(nopCloser{&probe}), msg)
	pad := lineLen - probe.Len()
	if pad < 0 {
		fail(fmt.Sprintf("flood: zap-logger lines are at least %d bytes", probe.Len()))
	}
	msg = append(msg, bytes.Repeat([]byte{'x'}, pad)...)
	log := newLog(os.Stdout)
	for seq := range total / int64(lineLen) {
		v := seq
		for i := 16; i >= 8; i-- {
			msg[i] = byte('0' + v%10)
			v /= 10
		}
		logFlood(log, msg)
	}
}

// logFlood logs one flood line: one call site, so that the probe's caller
// and the flood's are the same.
func logFlood(log logging.Logger, msg []byte) {
	log.Warn(string(msg), zap.Int("height", 42))
}

type nopCloser struct{ io.Writer }

func (nopCloser) Close() error { return nil }

// initializeTimeout is the handshake's deadline: avalanchego's 5 s, or
// AVAPLUGIN_INITIALIZE_TIMEOUT (a time.Duration) for an engine run under
// valgrind, which takes longer than that to answer.
func initializeTimeout() time.Duration {
	if d, err := time.ParseDuration(os.Getenv("AVAPLUGIN_INITIALIZE_TIMEOUT")); err == nil && d > 0 {
		return d
	}
	return 5 * time.Second
}

// runtimeClient is a Runtime client for the engine address in the
// environment, on a connection made at the first call.
func runtimeClient() runtimepb.RuntimeClient {
	addr := os.Getenv(engineAddrKey)
	if addr == "" {
		fail("required env var missing: " + engineAddrKey)
	}
	conn, err := grpc.NewClient("passthrough:///"+addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		fail("dial engine: " + err.Error())
	}
	return runtimepb.NewRuntimeClient(conn)
}

// initialize makes one Initialize call with a valid request.
func initialize(c runtimepb.RuntimeClient) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if _, err := c.Initialize(ctx, &runtimepb.InitializeRequest{ProtocolVersion: protocolVersion, Addr: "127.0.0.1:9"}); err != nil {
		fail("initialize: " + err.Error())
	}
}

func fail(msg string) {
	fmt.Fprintln(os.Stderr, "avaplugin: "+msg)
	os.Exit(2)
}
