package main

import (
	"fmt"
	"io"
	"runtime"
	"runtime/debug"

	"github.com/vmre/vmre"
)

func versionCommand(stdout io.Writer) int {
	version := "(devel)"
	if info, ok := debug.ReadBuildInfo(); ok && info.Main.Version != "" {
		version = info.Main.Version
	}
	fmt.Fprintf(stdout, "vmre %s protocol %d %s %s/%s\n", version, vmre.ProtocolVersion, runtime.Version(), runtime.GOOS, runtime.GOARCH)
	return exitOK
}
