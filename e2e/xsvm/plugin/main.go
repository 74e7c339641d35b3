// Command plugin is avalanchego v1.14.0's example VM, xsvm, as the
// rpcchainvm plugin a node launches (xsvm's own cmd/xsvm without its wallet
// subcommands): the tests build it from the module proxy and run it under
// vmre.
package main

import (
	"context"
	"fmt"
	"os"

	"github.com/ava-labs/avalanchego/vms/example/xsvm/cmd/run"
)

func main() {
	if err := run.Command().ExecuteContext(context.Background()); err != nil {
		fmt.Fprintf(os.Stderr, "command failed %v\n", err)
		os.Exit(1)
	}
}
