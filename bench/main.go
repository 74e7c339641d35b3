// Command bench compares vmre against avalanchego v1.15.0's
// vms/rpcchainvm/runtime/subprocess and hashicorp/go-plugin v1.7.0 on the
// same machine in the same run, and against the operating system's floor,
// and prints one Markdown table. See BENCHMARKS.md at the repository root.
//
//	cd bench && go run . -runs 200
//
// This driver builds the plugins (plugins/avaplugin, plugins/gpplugin), the
// vmre command (../cmd/vmre, for the output rows of `vmre run` and the
// whole-process rows), avadoctor (their avalanchego baseline) and the
// benchmark itself (runner/) into a temporary directory and runs it
// with every flag passed through (`go run . -h` lists them).
//
// The plugins are separate binaries because each engine launches them as
// subprocesses; the runner links vmre and avalanchego into one process.
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
		"./plugins/avaplugin", "./plugins/gpplugin", "./avadoctor", "./runner")
	build.Stdout, build.Stderr = os.Stderr, os.Stderr
	if err := build.Run(); err != nil {
		fmt.Fprintln(os.Stderr, "bench: build:", err)
		return 1
	}
	// The vmre command is built as the README builds it: static, without
	// cgo. avadoctor keeps cgo, as avalanchego is built (its BLS library
	// needs it).
	build = exec.Command("go", "build", "-trimpath", "-o", dir+string(os.PathSeparator), "github.com/vmre/vmre/cmd/vmre")
	build.Env = append(os.Environ(), "CGO_ENABLED=0")
	build.Stdout, build.Stderr = os.Stderr, os.Stderr
	if err := build.Run(); err != nil {
		fmt.Fprintln(os.Stderr, "bench: build vmre:", err)
		return 1
	}

	args := append([]string{"-plugin-dir", dir}, os.Args[1:]...)
	cmd := exec.Command(filepath.Join(dir, "runner"), args...)
	cmd.Stdin, cmd.Stdout, cmd.Stderr = os.Stdin, os.Stdout, os.Stderr
	cmd.Env = append(os.Environ(),
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
