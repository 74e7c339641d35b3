// Command bench compares vmre against avalanchego v1.15.0's
// vms/rpcchainvm/runtime/subprocess and hashicorp/go-plugin v1.7.0 on the
// same machine in the same run, and against the operating system's floor,
// and prints one Markdown table. See BENCHMARKS.md at the repository root.
//
//	cd bench && go run . -runs 200
//
// This driver builds the plugins (plugins/avaplugin, plugins/gpplugin), the
// vmre command (../cmd/vmre, for the output rows of `vmre run`) and the
// benchmark itself (runner/) into a temporary directory and runs it
// with every flag passed through (`go run . -h` lists them).
//
// Why two stages: vmre's gen/vm/runtime and avalanchego's
// proto/pb/vm/runtime are generated from the same file
// (vm/runtime/runtime.proto, package vm.runtime; wire compatibility requires
// it), and a binary that links both panics at init with "proto: file
// vm/runtime/runtime.proto is already registered" unless the protobuf
// registration-conflict policy is relaxed. The runner needs both engines in
// one process, so it is built and run with
// GOLANG_PROTOBUF_REGISTRATION_CONFLICT=warn; this driver links neither.
package main

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
)

func main() {
	os.Exit(run())
}

func run() int {
	dir, err := os.MkdirTemp("", "vmre-bench-bin-")
	if err != nil {
		fmt.Fprintln(os.Stderr, "bench:", err)
		return 1
	}
	defer os.RemoveAll(dir)

	fmt.Fprintln(os.Stderr, "building plugins and runner ...")
	build := exec.Command("go", "build", "-trimpath", "-o", dir+string(os.PathSeparator),
		"./plugins/avaplugin", "./plugins/gpplugin", "./runner", "github.com/vmre/vmre/cmd/vmre")
	build.Stdout, build.Stderr = os.Stderr, os.Stderr
	if err := build.Run(); err != nil {
		fmt.Fprintln(os.Stderr, "bench: build:", err)
		return 1
	}

	args := append([]string{"-plugin-dir", dir}, os.Args[1:]...)
	cmd := exec.Command(filepath.Join(dir, "runner"), args...)
	cmd.Stdin, cmd.Stdout, cmd.Stderr = os.Stdin, os.Stdout, os.Stderr
	cmd.Env = append(os.Environ(),
		"GOLANG_PROTOBUF_REGISTRATION_CONFLICT=warn",
		"VMRE_BENCH_CMDLINE=cd bench && go run . "+strings.Join(os.Args[1:], " "),
	)
	if err := cmd.Run(); err != nil {
		if ee, ok := err.(*exec.ExitError); ok {
			return ee.ExitCode()
		}
		fmt.Fprintln(os.Stderr, "bench:", err)
		return 1
	}
	return 0
}
