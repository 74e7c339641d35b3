// Command avadoctor is the benchmark's baseline for `vmre doctor`: the
// least a program needs to do what doctor does with avalanchego v1.15.0's
// vms/rpcchainvm/runtime/subprocess. It launches the plugin with
// subprocess.Bootstrap, the way avalanchego's rpcchainvm factory does (a
// grpcutils listener, subprocess.NewCmd, a console logger on stderr for
// the plugin's output and the launch's events), prints the plugin's pid
// and address, and stops it with the returned Stopper.
//
// Usage:
//
//	avadoctor                    exit 0 at once (the program's start-up)
//	avadoctor PLUGIN [ARGS...]   launch PLUGIN, handshake, stop
package main

import (
	"context"
	"fmt"
	"os"
	"time"

	"github.com/ava-labs/avalanchego/utils/logging"
	"github.com/ava-labs/avalanchego/vms/rpcchainvm/grpcutils"
	avasub "github.com/ava-labs/avalanchego/vms/rpcchainvm/runtime/subprocess"
)

func main() {
	if len(os.Args) < 2 {
		return
	}
	log := logging.NewLogger("", logging.NewWrappedCore(logging.Info, os.Stderr, logging.Plain.ConsoleEncoder()))
	lis, err := grpcutils.NewListener()
	if err != nil {
		fmt.Fprintln(os.Stderr, "avadoctor: listen:", err)
		os.Exit(1)
	}
	ctx := context.Background()
	cmd := avasub.NewCmd(os.Args[1], os.Args[2:]...)
	st, stopper, err := avasub.Bootstrap(ctx, lis, cmd, &avasub.Config{
		Stderr:           os.Stderr,
		Stdout:           os.Stderr,
		HandshakeTimeout: 5 * time.Second,
		Log:              log,
	})
	if err != nil {
		fmt.Fprintln(os.Stderr, "avadoctor:", err)
		os.Exit(1)
	}
	fmt.Printf("pid\t%d\nvm address\t%s\n", st.Pid, st.Addr)
	stopper.Stop(ctx)
	fmt.Println("result\tOK")
}
