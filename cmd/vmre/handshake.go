package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"os"
	"time"

	"github.com/vmre/vmre"
	"github.com/vmre/vmre/client"
)

func handshakeCommand(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("vmre handshake", flag.ContinueOnError)
	fs.Usage = func() {
		fmt.Fprintln(fs.Output(), "usage: vmre handshake [--engine HOST:PORT] --protocol-version N --vm-addr HOST:PORT [--protocol grpc|grpcweb|connect]\n\nActs as a plugin: calls vm.runtime.Runtime/Initialize on an engine. The engine\naddress defaults to the environment, as a plugin reads it.\n\nflags:")
		fs.PrintDefaults()
	}
	engine := fs.String("engine", "", "engine handshake address (default: from "+vmre.EngineAddressKey+" or its aliases)")
	version := fs.Uint("protocol-version", uint(vmre.ProtocolVersion), "protocol version to announce")
	vmAddr := fs.String("vm-addr", "", "the VM's own gRPC address to announce (required)")
	protocol := fs.String("protocol", "grpc", "wire protocol: grpc, grpcweb or connect")
	token := fs.String("token", "", "handshake token (default: from "+vmre.HandshakeTokenKey+")")
	timeout := fs.Duration("timeout", 5*time.Second, "deadline of the call")
	if code, ok := parseFlags(fs, args, stderr); !ok {
		return code
	}
	if *vmAddr == "" || fs.NArg() > 0 {
		fs.Usage()
		return exitUsage
	}
	var proto client.Protocol
	switch *protocol {
	case "grpc":
		proto = client.ProtocolGRPC
	case "grpcweb":
		proto = client.ProtocolGRPCWeb
	case "connect":
		proto = client.ProtocolConnect
	default:
		fmt.Fprintf(stderr, "vmre handshake: unknown --protocol %q, want grpc, grpcweb or connect\n", *protocol)
		return exitUsage
	}
	if *version == 0 || uint64(*version) > uint64(^uint32(0)) {
		fmt.Fprintf(stderr, "vmre handshake: --protocol-version %d is out of range\n", *version)
		return exitUsage
	}
	addr := *engine
	if addr == "" {
		var err error
		if addr, err = client.EngineAddrFromEnv(); err != nil {
			fmt.Fprintf(stderr, "vmre handshake: %v (or pass --engine)\n", err)
			return exitFailure
		}
	}
	if *token == "" {
		*token = os.Getenv(vmre.HandshakeTokenKey)
	}
	opts := []client.Option{client.WithProtocol(proto)}
	if *token != "" {
		opts = append(opts, client.WithToken(*token))
	}
	ctx, cancel := context.WithTimeout(ctx, *timeout)
	defer cancel()
	if err := client.New(addr, opts...).Initialize(ctx, uint32(*version), *vmAddr); err != nil {
		fmt.Fprintf(stderr, "vmre handshake: %v\n", err)
		return exitFailure
	}
	fmt.Fprintf(stdout, "handshake accepted by %s (protocol version %d, vm address %s)\n", addr, *version, *vmAddr)
	return exitOK
}
