package subprocess

import (
	"context"
	"crypto/tls"
	"errors"
	"net"
	"net/http"
	"time"

	"connectrpc.com/connect"
	"github.com/vmre/vmre"
	"google.golang.org/protobuf/types/known/emptypb"
)

// vmShutdownProcedure is the method of avalanchego's and luxd's VM service
// (proto/vm/vm.proto: package vm, service VM) that a node calls before it
// stops a VM. Their rpcchainvm.Serve ignores SIGTERM until it has been
// called.
const vmShutdownProcedure = "/vm.VM/Shutdown"

// errNotLoopback: the VM address is not a loopback one, so it is not called.
var errNotLoopback = errors.New("vm address is not a loopback address")

// shutdownVM calls vmShutdownProcedure on the VM server at addr, over gRPC
// on cleartext HTTP/2 as a node would, or over TLS with tlsCfg for a
// "tls://" address. Only a loopback address is called: the address comes
// from the plugin, and Stop must not send requests elsewhere on its
// behalf.
func shutdownVM(ctx context.Context, addr string, tlsCfg *tls.Config) error {
	hostPort, isTLS := vmre.CutTLSAddr(addr)
	host, _, err := net.SplitHostPort(hostPort)
	if err != nil {
		return err
	}
	if ip := net.ParseIP(host); host != "localhost" && (ip == nil || !ip.IsLoopback()) {
		return errNotLoopback
	}
	var protocols http.Protocols
	transport := &http.Transport{Protocols: &protocols}
	base := "http://" + hostPort
	if isTLS {
		protocols.SetHTTP2(true)
		if tlsCfg != nil {
			transport.TLSClientConfig = tlsCfg.Clone()
		}
		base = "https://" + hostPort
	} else {
		protocols.SetUnencryptedHTTP2(true)
	}
	defer transport.CloseIdleConnections()
	c := connect.NewClient[emptypb.Empty, emptypb.Empty](&http.Client{Transport: transport}, base+vmShutdownProcedure, connect.WithGRPC())
	_, err = c.CallUnary(ctx, connect.NewRequest(&emptypb.Empty{}))
	return err
}

// shutdownThenTerm is the stop sequence with Config.VMShutdown: the VM's
// Shutdown call (bounded by callGrace, and abandoned if the process
// exits), then SIGTERM and the grace period as usual.
func (p *Process) shutdownThenTerm(callGrace, grace time.Duration) {
	ctx, cancel := context.WithTimeout(context.Background(), callGrace)
	watched := make(chan struct{})
	go func() {
		defer close(watched)
		select {
		case <-p.exited:
			cancel()
		case <-ctx.Done():
		}
	}()
	start := time.Now()
	// The address is the plugin's word: call it only if the plugin's tree
	// listens there (or, off Linux, if that cannot be told).
	err := checkVMAddr(p.status.Addr, p.pid)
	if err == nil || errors.Is(err, errVMAddrUnchecked) {
		err = shutdownVM(ctx, p.status.Addr, p.vmTLS)
	}
	cancel()
	<-watched
	switch {
	case err == nil:
		p.log.Debug().Str("took", time.Since(start).Round(time.Microsecond).String()).Msg("vm shutdown called")
	case errors.Is(err, vmre.ErrForeignVMAddr):
		p.log.Warn().Err(err).Msg("vm shutdown not called; sending sigterm")
	case connect.CodeOf(err) == connect.CodeUnimplemented, errors.Is(err, errNotLoopback):
		p.log.Debug().Err(err).Msg("vm shutdown not called")
	default:
		p.log.Info().Err(err).Msg("vm shutdown call failed; sending sigterm")
	}
	if p.terminate() {
		p.killAfter(grace)
	}
}
