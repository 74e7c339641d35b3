//go:build linux

package subprocess_test

import (
	"context"
	"net"
	"os"
	"sync/atomic"
	"testing"
	"time"

	"github.com/vmre/vmre"
	handshakev1 "github.com/vmre/vmre/gen/vmre/handshake/v1"
	"google.golang.org/grpc"
	"google.golang.org/grpc/connectivity"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/protobuf/types/known/emptypb"
)

func init() { childModes["term-handshake-starved"] = childTermHandshakeStarved }

// starvedReads is how long the starved plugin's connection reader stalls:
// longer than the 1 s after which net/http's HTTP/2 server closes a
// connection it sent a GOAWAY on when the client has not closed it.
const starvedReads = 1500 * time.Millisecond

// TestStopRightAfterStarvedHandshake stops plugins the moment Bootstrap
// returns, as TestStopRightAfterHandshake does, but these are tokenless
// grpc-go plugins (the handshake server sends them its GOAWAY at once)
// whose connection reader gets no CPU for a while once their Initialize
// has been sent, as on a starved machine, so that the server closes the
// connection before they have read the answer. They stop on SIGTERM even
// inside their handshake, then exit 1: the stop must wait until the
// plugin has closed its side, not only the server, so every one exits 0.
func TestStopRightAfterStarvedHandshake(t *testing.T) {
	t.Parallel()
	stopRightAfterHandshake(t, "term-handshake-starved", 4)
}

// childTermHandshakeStarved is childTermHandshake with a grpc-go client
// that sends no token, and whose connection's first read after the call
// has been sent stalls for starvedReads before the client sees the bytes
// read, standing in for a reader that is not scheduled.
func childTermHandshakeStarved() int { return termHandshake(starvedGRPCInitialize) }

func starvedGRPCInitialize(ctx context.Context, vmAddr string) error {
	var starve atomic.Bool
	dial := func(ctx context.Context, addr string) (net.Conn, error) {
		c, err := (&net.Dialer{}).DialContext(ctx, "tcp", addr)
		if err != nil {
			return nil, err
		}
		return starvedConn{Conn: c, starve: &starve}, nil
	}
	conn, err := grpc.NewClient("passthrough:///"+os.Getenv(vmre.EngineAddressKey),
		grpc.WithTransportCredentials(insecure.NewCredentials()), grpc.WithContextDialer(dial))
	if err != nil {
		return err
	}
	defer conn.Close()
	// Connected first, so that the stall hits the answer, not the
	// connection's SETTINGS.
	conn.Connect()
	for s := conn.GetState(); s != connectivity.Ready; s = conn.GetState() {
		if !conn.WaitForStateChange(ctx, s) {
			return ctx.Err()
		}
	}
	starve.Store(true)
	req := &handshakev1.InitializeRequest{ProtocolVersion: childVersion(), Addr: vmAddr}
	return conn.Invoke(ctx, "/vm.runtime.Runtime/Initialize", req, &emptypb.Empty{})
}

// starvedConn stalls the first read that returns bytes once starve is set.
type starvedConn struct {
	net.Conn
	starve *atomic.Bool
}

func (c starvedConn) Read(b []byte) (int, error) {
	n, err := c.Conn.Read(b)
	if n > 0 && c.starve.CompareAndSwap(true, false) {
		time.Sleep(starvedReads)
	}
	return n, err
}
