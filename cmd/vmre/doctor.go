package main

import (
	"bufio"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"
	"text/tabwriter"
	"time"

	"github.com/vmre/vmre"
	"github.com/vmre/vmre/internal/healthprobe"
	"github.com/vmre/vmre/internal/preflight"
	"github.com/vmre/vmre/subprocess"
)

// healthTimeout bounds the doctor's grpc.health.v1 probe of the VM.
const healthTimeout = 2 * time.Second

func doctorCommand(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	// First, so that it outlasts the log's last flush.
	defer surviveBrokenPipe()()
	fs := flag.NewFlagSet("vmre doctor", flag.ContinueOnError)
	fs.Usage = func() {
		fmt.Fprintln(fs.Output(), "usage: vmre doctor [flags] -- PATH [ARGS...]\n\nLaunches PATH once, runs its handshake, probes its grpc.health.v1 service,\nstops it and prints a report. Exits 1 with the reason if the handshake fails.\n\nflags:")
		fs.PrintDefaults()
	}
	var ef engineFlags
	ef.register(fs)
	if code, ok := parseFlags(fs, args, stderr); !ok {
		return code
	}
	if fs.NArg() == 0 {
		fmt.Fprintln(stderr, "vmre doctor: no plugin given: vmre doctor [flags] -- PATH [ARGS...]")
		return exitUsage
	}
	if ef.logFormat == "" {
		ef.logFormat = "console" // plugin output is context for a person here
	}
	log, logSink, err := ef.logger(stderr)
	if err != nil {
		fmt.Fprintf(stderr, "vmre doctor: %v\n", err)
		return exitUsage
	}
	// Runs last: the log's last lines reach stderr before doctor returns.
	defer logSink.Close()
	stderr = logSink.Direct()
	if err := ef.validate(); err != nil {
		fmt.Fprintf(stderr, "vmre doctor: %v\n", err)
		return exitUsage
	}
	ctx, stopSignals := signal.NotifyContext(ctx, os.Interrupt, syscall.SIGTERM)
	defer stopSignals()
	// Doctor launches once: the exec-link directory is not left to the
	// next engine's sweep.
	defer preflight.RemoveLinkDir()

	path, pluginArgs := fs.Arg(0), fs.Args()[1:]
	cfg := ef.subprocessConfig(path, log)
	// tabwriter writes each cell on its own; the buffer makes the report
	// one write, flushed with it.
	out := bufio.NewWriter(stdout)
	report := tabwriter.NewWriter(out, 0, 0, 2, ' ', 0)
	flush := func() {
		_ = report.Flush()
		_ = out.Flush()
	}
	fmt.Fprintf(report, "plugin\t%s\n", path)
	fmt.Fprintf(report, "accepted versions\t%s\n", vmre.FormatVersions(cfg.AcceptedVersions))

	p, err := subprocess.Bootstrap(ctx, subprocess.NewCmd(path, pluginArgs...), cfg)
	if err != nil {
		fmt.Fprintf(report, "result\tFAIL\n")
		flush()
		printFailure(stderr, err)
		return exitFailure
	}
	st := p.Status()
	fmt.Fprintf(report, "pid\t%d\n", st.Pid)
	fmt.Fprintf(report, "vm address\t%s\n", st.Addr)
	fmt.Fprintf(report, "protocol version\t%d\n", st.ProtocolVersion)
	fmt.Fprintf(report, "time to handshake\t%s\n", st.HandshakeDuration.Round(time.Microsecond))
	// The address is the plugin's word: probe it only if the plugin's
	// tree listens there. A plugin whose VM address refuses connections,
	// or is another process's, would fail under a node too.
	var addrProblem string
	switch err := p.CheckVMAddr(); {
	case errors.Is(err, vmre.ErrForeignVMAddr):
		addrProblem = err.Error()
		fmt.Fprintf(report, "grpc.health.v1\tnot probed: the vm address is not the plugin's\n")
	default:
		health, refused := probeHealth(ctx, st.Addr)
		if refused {
			addrProblem = fmt.Sprintf("vm address %s refuses connections", st.Addr)
		}
		fmt.Fprintf(report, "grpc.health.v1\t%s\n", health)
	}

	stopStart := time.Now()
	stopCtx, cancel := context.WithTimeout(context.WithoutCancel(ctx), ef.stopDeadline())
	defer cancel()
	p.Stop(stopCtx)
	exit, problem := describeExit(p)
	fmt.Fprintf(report, "stop\t%s%s\n", time.Since(stopStart).Round(time.Microsecond), exit)
	if problem != "" || addrProblem != "" {
		fmt.Fprintf(report, "result\tFAIL\n")
		flush()
		if addrProblem != "" {
			fmt.Fprintf(stderr, "vmre doctor: %s\n", addrProblem)
		}
		if problem != "" {
			fmt.Fprintf(stderr, "vmre doctor: stop: %s\n", problem)
		}
		return exitFailure
	}
	fmt.Fprintf(report, "result\tOK\n")
	flush()
	return exitOK
}

// printFailure explains a failed launch: the reason, then the process's
// exit status when it died, and its last output lines (both streams) when
// it died or timed out.
func printFailure(w io.Writer, err error) {
	fmt.Fprintf(w, "vmre doctor: %v\n", err)
	var (
		exitErr    *vmre.ExitError
		timeoutErr *vmre.TimeoutError
		tail       []vmre.TailLine
	)
	switch {
	case errors.As(err, &exitErr):
		if exitErr.Signal != "" {
			fmt.Fprintf(w, "  killed by signal: %s\n", exitErr.Signal)
		} else {
			fmt.Fprintf(w, "  exit status: %d\n", exitErr.Code)
		}
		tail = exitErr.Tail
	case errors.As(err, &timeoutErr):
		tail = timeoutErr.Tail
	}
	if len(tail) > 0 {
		fmt.Fprintln(w, "  last output lines:")
		for _, line := range tail {
			fmt.Fprintf(w, "    %s: %s\n", line.Stream, escapeControl(line.Text))
		}
	}
	switch {
	case errors.Is(err, vmre.ErrProtocolVersionMismatch):
		fmt.Fprintln(w, "  hint: the plugin speaks another protocol version; rebuild it against a matching engine or pass --protocol-version")
	case errors.Is(err, vmre.ErrHandshakeTimeout):
		fmt.Fprintln(w, "  hint: the plugin never called Initialize; does it read one of "+fmt.Sprint(vmre.EngineAddressKeys())+"?")
	case exitErr != nil && exitErr.Signal == "" && exitErr.Code == 0:
		// Nothing failed, as far as the process knew: it is most often
		// not a VM plugin, or one started without what it needs.
		fmt.Fprintln(w, "  hint: the plugin exited with status 0 without calling Initialize; is it a VM plugin, given the arguments it needs?")
	}
}

// describeExit renders how a stopped runtime exited, when it reports it,
// and what is wrong with that stop: a plugin that had to be killed, or one
// that had not exited when the stop's deadline passed, does not stop
// cleanly under a node either.
func describeExit(p *subprocess.Process) (exit, problem string) {
	select {
	case <-p.Done():
	default:
		return " (still running)", "the plugin had not exited when the stop's deadline passed"
	}
	st := p.ExitStatus()
	if st.Signal == "killed" {
		return " (signal: killed)", "the plugin was killed: it did not exit within the grace period after SIGTERM (and, with --vm-shutdown, the VM's Shutdown call)"
	}
	return " (" + st.String() + ")", ""
}

// servingStatus names grpc.health.v1's HealthCheckResponse.ServingStatus
// values.
var servingStatus = map[int32]string{0: "UNKNOWN", 1: "SERVING", 2: "NOT_SERVING", 3: "SERVICE_UNKNOWN"}

// probeHealth asks the VM's grpc.health.v1 service for the overall status,
// over gRPC on cleartext HTTP/2, and reports whether the address refused
// the connection. A VM without the service is reported, not failed. The
// probe is the engine's liveness probe client: one connection, no
// goroutine of its own; ctx ends it early.
func probeHealth(ctx context.Context, addr string) (status string, refused bool) {
	probe := healthprobe.New(addr, nil)
	defer probe.Close()
	defer context.AfterFunc(ctx, probe.Close)()
	st, err := probe.Check(healthTimeout)
	switch {
	case errors.Is(err, healthprobe.ErrUnimplemented):
		return "not served (optional)", false
	case errors.Is(err, syscall.ECONNREFUSED):
		return "error: connection refused", true
	case err != nil:
		return "error: " + err.Error(), false
	}
	if name, ok := servingStatus[st]; ok {
		return name, false
	}
	return fmt.Sprintf("status %d", st), false
}
