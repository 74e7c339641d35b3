// Command rpcvmplugin is a VM plugin built on avalanchego's own
// rpcchainvm.Serve, to check by hand that an engine stops a real
// rpcchainvm plugin cleanly (vmre: subprocess.Config.VMShutdown, vmre
// run's --vm-shutdown). Serve ignores SIGTERM until its VM service's
// Shutdown method has been called. The VM itself is empty: a runtime
// engine never calls the VM's methods, and Serve's Shutdown handler does
// not reach the VM until a node has initialized it.
//
//	cd bench && go build -o /tmp/rpcvm ./plugins/rpcvmplugin
//	go run ../cmd/vmre run --protocol-version 46 -- /tmp/rpcvm    # then Ctrl-C
package main

import (
	"context"
	"fmt"
	"os"

	"github.com/ava-labs/avalanchego/snow/engine/snowman/block"
	"github.com/ava-labs/avalanchego/vms/rpcchainvm"
)

// emptyVM implements block.ChainVM by embedding it; calling any of its
// methods would panic, and nothing here does.
type emptyVM struct{ block.ChainVM }

func main() {
	if err := rpcchainvm.Serve(context.Background(), emptyVM{}); err != nil {
		fmt.Fprintln(os.Stderr, "rpcvmplugin:", err)
		os.Exit(1)
	}
}
