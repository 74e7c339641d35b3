package engine

import (
	"context"
	"errors"
	"net/http"
	"os"
	"os/exec"
	"syscall"
	"testing"
	"time"

	"connectrpc.com/connect"
	"github.com/rs/zerolog"
	"github.com/vmre/vmre/internal/healthprobe"
	"github.com/vmre/vmre/subprocess"
	"google.golang.org/protobuf/types/known/emptypb"
	"google.golang.org/protobuf/types/known/wrapperspb"
)

// BenchmarkProbeCost measures the engine process's CPU per liveness probe
// (getrusage, so system calls count; the VM server, grpc-go, is another
// process), each probe on a fresh goroutine as the probe timer runs it:
// connect's client against healthprobe, the engine's.
func BenchmarkProbeCost(b *testing.B) {
	self, err := os.Executable()
	if err != nil {
		b.Fatal(err)
	}
	// The external tests' TestMain runs this binary as their plugins.
	launcher := NewSubprocessLauncher(subprocess.Config{Log: zerolog.Nop(), HandshakeTimeout: time.Minute},
		func(spec Spec) (*exec.Cmd, error) {
			cmd := subprocess.NewCmd(spec.Path, spec.Args...)
			cmd.Env = append(os.Environ(), "VMRE_ENGINE_TEST_CHILD=grpc-health")
			return cmd, nil
		})
	e, err := New(Config{Launcher: launcher, SampleInterval: -1})
	if err != nil {
		b.Fatal(err)
	}
	defer e.Close(context.Background())
	rt, err := e.Launch(context.Background(), Spec{Name: "vm", Path: self})
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
	b.Run("healthprobe", func(b *testing.B) {
		h := healthprobe.New(rt.VMAddr, nil)
		defer h.Close()
		measure(b, func() error {
			status, err := h.Check(5 * time.Second)
			if err == nil && status != healthServing {
				err = errors.New("not serving")
			}
			return err
		})
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
