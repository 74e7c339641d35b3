package handshaketest

import (
	"context"
	"net/http"
	"sync"
	"sync/atomic"

	"connectrpc.com/connect"
	"github.com/vmre/vmre"
	handshakev1 "github.com/vmre/vmre/gen/vmre/handshake/v1"
	"github.com/vmre/vmre/server"
	"google.golang.org/protobuf/types/known/emptypb"
)

// FloodStats counts a flood's answered calls.
type FloodStats struct {
	Answers  int64 // calls answered before ctx ended, admitted or not
	Refused  int64 // of those, refused with permission_denied or unauthenticated
	Admitted int64 // of those, admitted
}

// Flood is a foreign process flooding a handshake port: it opens conns
// h2c connections to addr, each of its own, and calls Initialize
// (version, with token in vmre's token header unless it is "") over gRPC
// on each, calls times (negative: until ctx ends). It calls flooding once
// every connection has had an answer (or ended), unless ctx has ended by
// then, and returns once every connection is done.
func Flood(ctx context.Context, addr, token string, version uint32, conns, calls int, flooding func()) FloodStats {
	var stats struct{ answers, refused, admitted atomic.Int64 }
	var answered, wg sync.WaitGroup
	answered.Add(conns)
	for range conns {
		wg.Go(func() {
			var protocols http.Protocols
			protocols.SetUnencryptedHTTP2(true)
			tr := &http.Transport{Protocols: &protocols, MaxConnsPerHost: 1}
			defer tr.CloseIdleConnections()
			c := connect.NewClient[handshakev1.InitializeRequest, emptypb.Empty](&http.Client{Transport: tr},
				"http://"+addr+server.InitializeProcedure, connect.WithGRPC())
			first := true
			defer func() {
				if first {
					answered.Done()
				}
			}()
			for i := 0; ctx.Err() == nil && i != calls; i++ {
				req := connect.NewRequest(&handshakev1.InitializeRequest{ProtocolVersion: version, Addr: "127.0.0.1:9"})
				if token != "" {
					req.Header().Set(vmre.HandshakeTokenHeader, token)
				}
				_, err := c.CallUnary(ctx, req)
				if ctx.Err() != nil {
					return
				}
				stats.answers.Add(1)
				switch connect.CodeOf(err) {
				case connect.CodePermissionDenied, connect.CodeUnauthenticated:
					stats.refused.Add(1)
				}
				if err == nil {
					stats.admitted.Add(1)
				}
				if first {
					first = false
					answered.Done()
				}
			}
		})
	}
	answered.Wait()
	if ctx.Err() == nil && flooding != nil {
		flooding()
	}
	wg.Wait()
	return FloodStats{Answers: stats.answers.Load(), Refused: stats.refused.Load(), Admitted: stats.admitted.Load()}
}
