// Command vmre launches VM plugins, runs their handshake, and supervises
// them; it can also check a plugin binary (doctor) or play a plugin
// (handshake).
//
//	vmre run [flags] [-- PATH [ARGS...]]
//	vmre run --config FILE [flags]
//	vmre doctor [flags] -- PATH [ARGS...]
//	vmre handshake [--engine HOST:PORT] --protocol-version N --vm-addr HOST:PORT [--protocol grpc|grpcweb|connect]
//	vmre version
//
// Exit status: 0 on success, 1 on failure, 2 on a usage error; vmre run
// exits 3 when it had to kill a runtime during its shutdown.
package main

import (
	"context"
	"fmt"
	"io"
	"os"
)

// Exit codes shared by every subcommand.
const (
	exitOK      = 0
	exitFailure = 1
	exitUsage   = 2
	// exitKilled: vmre run stopped on a signal, but a runtime did not exit
	// in its grace period and was killed.
	exitKilled = 3
)

// exampleVMCommand is the hidden subcommand through which vmre runs its
// built-in example VM as a child of itself.
const exampleVMCommand = "example-vm"

const usage = `usage:
  vmre run [flags] [-- PATH [ARGS...]]      launch a plugin (default: the built-in example VM) and supervise it
  vmre run --config FILE [flags]            run and supervise every runtime a config file declares
  vmre doctor [flags] -- PATH [ARGS...]     launch a plugin once and report on its handshake
  vmre handshake [flags]                    act as a plugin: call Initialize on an engine
  vmre version                              print the version

Run 'vmre COMMAND -h' for a command's flags.
`

func main() {
	os.Exit(run(context.Background(), os.Args[1:], os.Stdout, os.Stderr))
}

func run(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		fmt.Fprint(stderr, usage)
		return exitUsage
	}
	cmd, rest := args[0], args[1:]
	switch cmd {
	case "run":
		return runCommand(ctx, rest, stdout, stderr)
	case "doctor":
		return doctorCommand(ctx, rest, stdout, stderr)
	case "handshake":
		return handshakeCommand(ctx, rest, stdout, stderr)
	case "version", "--version", "-version":
		return versionCommand(stdout)
	case exampleVMCommand:
		return exampleVM(ctx, rest, stdout, stderr)
	case "help", "-h", "--help":
		fmt.Fprint(stdout, usage)
		return exitOK
	default:
		fmt.Fprintf(stderr, "vmre: unknown command %q\n\n%s", cmd, usage)
		return exitUsage
	}
}
