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
		fmt.Fprintln(fs.Output(), "usage: vmre handshake [--engine HOST:PORT|unix:/PATH|https://HOST:PORT] --protocol-version N --vm-addr [tls://]HOST:PORT [--protocol grpc|grpcweb|connect] [--ca CA.pem [--cert CERT.pem --key KEY.pem]]\n\nActs as a plugin: calls vm.runtime.Runtime/Initialize on an engine. The engine\naddress, token and TLS files default to the environment, as a plugin reads them.\n--ca (or --cert and --key) makes the call use TLS.\n\nflags:")
		fs.PrintDefaults()
	}
	engine := fs.String("engine", "", "engine handshake address: host:port, unix:/path or a URL (default: from "+vmre.EngineAddressKey+" or its aliases)")
	version := fs.Uint("protocol-version", uint(vmre.ProtocolVersion), "protocol version to announce")
	vmAddr := fs.String("vm-addr", "", "the VM's own gRPC address to announce (required); tls://host:port for a VM server that speaks TLS")
	protocol := fs.String("protocol", "grpc", "wire protocol: grpc, grpcweb or connect")
	token := fs.String("token", "", "handshake token (default: from "+vmre.HandshakeTokenKey+")")
	timeout := fs.Duration("timeout", 5*time.Second, "deadline of the call")
	name := fs.String("name", os.Getenv(vmre.RuntimeNameKey), "with an attach endpoint, the runtime's name: the same name attaches as the same runtime again (default: from "+vmre.RuntimeNameKey+")")
	ca := fs.String("ca", os.Getenv(vmre.EngineCAKey), "PEM file of the CAs that verify the engine's TLS certificate (default: from "+vmre.EngineCAKey+")")
	cert := fs.String("cert", os.Getenv(vmre.EngineCertKey), "PEM client certificate for an engine that requires one (default: from "+vmre.EngineCertKey+")")
	key := fs.String("key", os.Getenv(vmre.EngineKeyKey), "PEM key of --cert (default: from "+vmre.EngineKeyKey+")")
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
	opts := []client.Option{client.WithProtocol(proto), client.WithName(*name)}
	if *ca != "" || *cert != "" || *key != "" {
		cfg, err := client.TLSFromFiles(*ca, *cert, *key)
		if err != nil {
			fmt.Fprintf(stderr, "vmre handshake: %v\n", err)
			return exitUsage
		}
		opts = append(opts, client.WithTLS(cfg))
	}
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
