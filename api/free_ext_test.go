package api_test

import (
	"context"
	"runtime"
	"testing"
	"time"
	"weak"

	"github.com/rs/zerolog"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/vmre/vmre/api"
	"github.com/vmre/vmre/engine"
	vmrev1 "github.com/vmre/vmre/gen/vmre/v1"
	"github.com/vmre/vmre/gen/vmre/v1/vmrev1connect"
	"github.com/vmre/vmre/server"
	"github.com/vmre/vmre/subprocess"
)

// A closed engine is freed once its embedder lets go of it, with its
// runtimes' output rings and the API that served them, even after a
// TailOutput stream followed a runtime until the engine closed: a
// program that makes and closes engines keeps none of them.
//
// Nearly always at once; now and then only after the server's
// IdleTimeout. net/http's HTTP/2 server stops a connection's idle timer
// in a deferred call that runs before the one closing the streams still
// open when the connection ends, and closing the last of them re-arms
// the timer, which holds the connection, its server, the handler and so
// the engine until it fires (in 2 of 300 runs under load, at -cpu 1, 2
// and 4, it was freed about 2 minutes after Close).
func TestClosedEngineIsFreed(t *testing.T) {
	t.Parallel()
	freed := closedEngine(t)
	for deadline := time.Now().Add(server.IdleTimeout + time.Minute); freed.Value() != nil; {
		if time.Now().After(deadline) {
			t.Fatalf("the engine is still reachable %v after Close", server.IdleTimeout+time.Minute)
		}
		runtime.GC()
		time.Sleep(10 * time.Millisecond)
	}
}

// closedEngine runs an engine with one runtime and 20 MB of output,
// served by the API to a following TailOutput stream, closes it all, and
// returns a weak pointer to the engine. Nothing of it is left to the
// test's cleanups, which the testing package keeps.
func closedEngine(t *testing.T) weak.Pointer[engine.Engine] {
	l := &fakeLauncher{}
	eng, err := engine.New(engine.Config{Launcher: l, OutputBytes: 64 << 20, OutputLines: 1 << 20, Log: zerolog.Nop()})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	defer eng.Close(ctx)
	rt, err := eng.Launch(ctx, engine.Spec{Path: "/bin/vm"})
	if err != nil {
		t.Fatal(err)
	}
	out := l.output(0)
	for range 100_000 {
		out(&subprocess.Line{Stream: "stdout", Text: make([]byte, 200)})
	}

	h, err := api.New(eng, api.Config{Token: testToken})
	if err != nil {
		t.Fatal(err)
	}
	addr, shutdown := serveAPI(t, h)
	defer shutdown(ctx)
	conn, err := grpc.NewClient(addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	stream, err := conn.NewStream(ctx, &grpc.StreamDesc{ServerStreams: true}, vmrev1connect.RuntimeServiceTailOutputProcedure)
	if err != nil {
		t.Fatal(err)
	}
	if err := stream.SendMsg(&vmrev1.TailOutputRequest{Id: rt.ID, Lines: 1000, Follow: true}); err != nil {
		t.Fatal(err)
	}
	if err := stream.CloseSend(); err != nil {
		t.Fatal(err)
	}
	if err := stream.RecvMsg(new(vmrev1.TailOutputResponse)); err != nil {
		t.Fatal(err)
	}
	eng.Close(ctx) // ends the stream
	return weak.Make(eng)
}
