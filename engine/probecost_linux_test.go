package engine_test

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"net"
	"net/http"
	"os"
	"os/exec"
	"syscall"
	"testing"
	"time"

	"connectrpc.com/connect"
	"github.com/rs/zerolog"
	"github.com/vmre/vmre/engine"
	"github.com/vmre/vmre/subprocess"
	"golang.org/x/net/http2"
	"golang.org/x/net/http2/hpack"
	"google.golang.org/protobuf/types/known/emptypb"
	"google.golang.org/protobuf/types/known/wrapperspb"
)

// BenchmarkProbeCost measures the engine process's CPU per liveness probe
// (getrusage, so system calls count; the VM server is another process):
// the connect client the engine uses, called on a fresh goroutine as the
// probe timer does, against a minimal HTTP/2 client that writes each
// request in one write and acks the server's frames with the next one.
// It tells whether a plain client is worth its lines (docs/supervision.md).
func BenchmarkProbeCost(b *testing.B) {
	self, err := os.Executable()
	if err != nil {
		b.Fatal(err)
	}
	launcher := engine.NewSubprocessLauncher(subprocess.Config{Log: zerolog.Nop(), HandshakeTimeout: time.Minute},
		func(spec engine.Spec) (*exec.Cmd, error) {
			cmd := subprocess.NewCmd(spec.Path, spec.Args...)
			cmd.Env = append(os.Environ(), childEnv+"=grpc-health")
			return cmd, nil
		})
	e, err := engine.New(engine.Config{Launcher: launcher, SampleInterval: -1})
	if err != nil {
		b.Fatal(err)
	}
	defer e.Close(context.Background())
	rt, err := e.Launch(context.Background(), engine.Spec{Name: "vm", Path: self})
	if err != nil {
		b.Fatal(err)
	}

	b.Run("connect", func(b *testing.B) {
		var protocols http.Protocols
		protocols.SetUnencryptedHTTP2(true)
		transport := &http.Transport{Protocols: &protocols, MaxConnsPerHost: 1}
		defer transport.CloseIdleConnections()
		client := connect.NewClient[emptypb.Empty, wrapperspb.Int32Value](&http.Client{Transport: transport},
			"http://"+rt.VMAddr+"/grpc.health.v1.Health/Check", connect.WithGRPC())
		probe := func() error {
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer cancel()
			resp, err := client.CallUnary(ctx, connect.NewRequest(&emptypb.Empty{}))
			if err == nil && resp.Msg.GetValue() != 1 {
				err = errors.New("not serving")
			}
			return err
		}
		measure(b, probe)
	})
	b.Run("plain-h2c", func(b *testing.B) {
		c, err := dialPlainProbe(rt.VMAddr)
		if err != nil {
			b.Fatal(err)
		}
		defer c.conn.Close()
		measure(b, c.check)
	})
}

// measure runs probe b.N times, each on a fresh goroutine, and reports the
// process's CPU per probe.
func measure(b *testing.B, probe func() error) {
	if err := probe(); err != nil { // the connection, made before the clock runs
		b.Fatal(err)
	}
	var before, after syscall.Rusage
	_ = syscall.Getrusage(syscall.RUSAGE_SELF, &before)
	b.ResetTimer()
	for range b.N {
		done := make(chan error, 1)
		go func() { done <- probe() }()
		if err := <-done; err != nil {
			b.Fatal(err)
		}
	}
	b.StopTimer()
	_ = syscall.Getrusage(syscall.RUSAGE_SELF, &after)
	cpu := after.Utime.Nano() + after.Stime.Nano() - before.Utime.Nano() - before.Stime.Nano()
	b.ReportMetric(float64(cpu)/float64(b.N), "cpu-ns/op")
}

// plainProbe is a minimal h2c gRPC client for one method, for the
// benchmark only: no flow control beyond a large connection window, acks
// queued until the next request.
type plainProbe struct {
	conn    net.Conn
	out     bytes.Buffer
	fr      *http2.Framer
	henc    *hpack.Encoder
	hbuf    bytes.Buffer
	stream  uint32
	pending []func() error // acks to write with the next request
	addr    string
}

func dialPlainProbe(addr string) (*plainProbe, error) {
	conn, err := net.Dial("tcp", addr)
	if err != nil {
		return nil, err
	}
	p := &plainProbe{conn: conn, addr: addr, stream: 1}
	p.fr = http2.NewFramer(&p.out, bufio.NewReader(conn))
	p.fr.ReadMetaHeaders = hpack.NewDecoder(4096, nil)
	p.henc = hpack.NewEncoder(&p.hbuf)
	p.out.WriteString(http2.ClientPreface)
	if err := p.fr.WriteSettings(); err != nil {
		return nil, err
	}
	if err := p.fr.WriteWindowUpdate(0, 1<<30); err != nil {
		return nil, err
	}
	return p, nil
}

func (p *plainProbe) check() error {
	for _, ack := range p.pending {
		if err := ack(); err != nil {
			return err
		}
	}
	p.pending = p.pending[:0]
	p.hbuf.Reset()
	for _, f := range [][2]string{{":method", "POST"}, {":scheme", "http"}, {":path", "/grpc.health.v1.Health/Check"},
		{":authority", p.addr}, {"content-type", "application/grpc"}, {"te", "trailers"}} {
		_ = p.henc.WriteField(hpack.HeaderField{Name: f[0], Value: f[1]})
	}
	id := p.stream
	p.stream += 2
	if err := p.fr.WriteHeaders(http2.HeadersFrameParam{StreamID: id, BlockFragment: p.hbuf.Bytes(), EndHeaders: true}); err != nil {
		return err
	}
	if err := p.fr.WriteData(id, true, []byte{0, 0, 0, 0, 0}); err != nil {
		return err
	}
	if _, err := p.conn.Write(p.out.Bytes()); err != nil {
		return err
	}
	p.out.Reset()
	_ = p.conn.SetReadDeadline(time.Now().Add(5 * time.Second))
	var status byte
	for {
		f, err := p.fr.ReadFrame()
		if err != nil {
			return err
		}
		switch f := f.(type) {
		case *http2.SettingsFrame:
			if !f.IsAck() {
				p.pending = append(p.pending, p.fr.WriteSettingsAck)
			}
		case *http2.PingFrame:
			if !f.IsAck() {
				data := f.Data
				p.pending = append(p.pending, func() error { return p.fr.WritePing(true, data) })
			}
		case *http2.DataFrame:
			if f.StreamID == id {
				if d := f.Data(); len(d) == 7 {
					status = d[6]
				}
				if f.StreamEnded() {
					return p.result(status, "")
				}
			}
		case *http2.MetaHeadersFrame:
			if f.StreamID == id && f.StreamEnded() {
				return p.result(status, f.PseudoValue("status")+" "+valueOf(f, "grpc-status"))
			}
		case *http2.GoAwayFrame, *http2.RSTStreamFrame:
			return errors.New("stream ended by the server")
		}
	}
}

func valueOf(f *http2.MetaHeadersFrame, name string) string {
	for _, h := range f.Fields {
		if h.Name == name {
			return h.Value
		}
	}
	return ""
}

func (p *plainProbe) result(status byte, trailer string) error {
	if trailer != " 0" || status != 1 {
		return errors.New("health check: trailer " + trailer)
	}
	return nil
}
