package main

import (
	"context"
	"net/http"
	"testing"
	"time"

	"connectrpc.com/connect"
	vmrev1 "github.com/vmre/vmre/gen/vmre/v1"
	"github.com/vmre/vmre/gen/vmre/v1/vmrev1connect"
	"github.com/vmre/vmre/internal/h2raw"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/protobuf/proto"
)

// TestRunServesWhenEveryConnectionIsBusy fills `vmre run`'s connection cap
// with busy connections, each holding a ListRuntimes call whose answer it
// never accepts (an HTTP/2 window of 0). A new connection then closes the
// one whose call has waited the longest for its client, instead of being
// closed itself: health answers, and a caller with the token lists and
// restarts the runtime.
func TestRunServesWhenEveryConnectionIsBusy(t *testing.T) {
	const (
		maxConns = 8
		token    = "busy-conns-token-0123456789abcdef"
	)
	t.Parallel()
	tokenFile := writeTokenFile(t, token)
	p := startRun(t, "--token-file", tokenFile, "--api-max-conns", "8", "--api-idle-timeout", "10m", "--api-send-timeout", "10m")
	addr := p.waitFor(t, "api listening", "").Addr
	p.waitFor(t, "runtime running", "examplevm")
	url := "http://" + addr

	msg, err := proto.Marshal(&vmrev1.ListRuntimesRequest{})
	if err != nil {
		t.Fatal(err)
	}
	var attackers []*h2raw.Conn
	for range maxConns {
		c, err := h2raw.Dial(addr, 0, 16)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = c.Close() })
		if _, err := c.OpenGRPC(addr, vmrev1connect.RuntimeServiceListRuntimesProcedure, msg); err != nil {
			t.Fatal(err)
		}
		// Its answer's headers: the call is under way, waiting on the
		// window.
		for ev := range c.Events() {
			if ev.Kind == "headers" {
				break
			}
		}
		attackers = append(attackers, c)
	}

	ctx, cancel := context.WithTimeout(t.Context(), time.Minute) // a bound for a hung test
	defer cancel()
	var protocols http.Protocols
	protocols.SetUnencryptedHTTP2(true)
	// A busy connection is closed only once its call has waited a while
	// (a second); until then new connections are refused.
	attempts := 0
	for {
		attempts++
		tr := &http.Transport{Protocols: &protocols}
		health := connect.NewClient[healthpb.HealthCheckRequest, healthpb.HealthCheckResponse](&http.Client{Transport: tr},
			url+"/grpc.health.v1.Health/Check", connect.WithGRPC())
		_, err := health.CallUnary(ctx, connect.NewRequest(&healthpb.HealthCheckRequest{}))
		tr.CloseIdleConnections()
		if err == nil {
			break
		}
		if ctx.Err() != nil {
			t.Fatalf("health with every connection busy, %d attempts: %v", attempts, err)
		}
	}
	t.Logf("health answered after %d attempts", attempts)

	client := tokenClient(t, url, token)
	list, err := client.ListRuntimes(ctx, &vmrev1.ListRuntimesRequest{})
	if err != nil || len(list.GetRuntimes()) != 1 {
		t.Fatalf("list with every connection busy: %v, %v", list, err)
	}
	if _, err := client.RestartRuntime(ctx, &vmrev1.RestartRuntimeRequest{Id: list.GetRuntimes()[0].GetId()}); err != nil {
		t.Fatalf("restart with every connection busy: %v", err)
	}
	// The room was made by closing the stalled clients' connections,
	// oldest first.
	p.waitFor(t, "connection limit reached, every connection busy: closed the one waiting the longest for its client", "")
	select {
	case <-drained(attackers[0]):
	case <-ctx.Done():
		t.Fatal("the connection whose call waited the longest is still open")
	}
}

// drained returns a channel closed once c's events end (the server closed
// it).
func drained(c *h2raw.Conn) <-chan struct{} {
	done := make(chan struct{})
	go func() {
		defer close(done)
		for range c.Events() {
		}
	}()
	return done
}
