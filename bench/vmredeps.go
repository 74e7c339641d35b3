package main

// The driver builds the vmre command (github.com/vmre/vmre/cmd/vmre) in this
// module, so this module's go.mod and go.sum must hold the modules that
// command imports. go mod tidy keeps only what this module's own packages
// import: the imports below keep those the command alone uses.
import _ "github.com/coreos/go-systemd/v22/daemon"
