package main

import (
	"fmt"
	"os"
	"os/exec"
	"os/signal"
	"syscall"

	"golang.org/x/sys/unix"
)

// initSignals are the signals the init passes on to vmre run: those that
// stop it, reload it or ask for its goroutine dump.
var initSignals = []os.Signal{syscall.SIGHUP, syscall.SIGINT, syscall.SIGQUIT, syscall.SIGTERM, syscall.SIGUSR1, syscall.SIGUSR2}

// runAsInit runs vmre run as the init (PID 1) of its PID namespace, and
// reports false without doing anything when vmre is not PID 1. vmre is PID
// 1 as a container's entrypoint and as a Nomad exec task (the driver's PID
// mode is private by default). There, every process orphaned in the
// namespace, such as a helper whose plugin exited first, becomes vmre's
// child and stays a zombie, holding its PID, until vmre reaps it; and
// reaping children that are not its own would race with the waits vmre
// makes for the plugins it launched. So the init starts vmre run again as
// its only child, with the same arguments, environment and standard
// streams, passes initSignals on to it, reaps every child, and returns
// the exit status of that one when it ends (128+N when signal N ended it).
// When the init exits, the kernel kills whatever is left in the namespace.
func runAsInit() (code int, ok bool) {
	if os.Getpid() != 1 {
		return 0, false
	}
	// As the engine is (engine.Config.NonDumpable): a process of vmre's
	// user must not read the environment the plugins may not inherit
	// (--env-policy clean) from the init's /proc/1/environ, or ptrace it.
	// --dumpable still applies to the engine, the process worth debugging.
	if err := unix.Prctl(unix.PR_SET_DUMPABLE, 0, 0, 0, 0); err != nil {
		fmt.Fprintf(os.Stderr, "vmre run: as the PID namespace's init, make it non-dumpable: %v\n", err)
		return exitFailure, true
	}
	sigs := make(chan os.Signal, 16)
	signal.Notify(sigs, append([]os.Signal{syscall.SIGCHLD}, initSignals...)...)
	exe, err := os.Executable()
	if err != nil {
		// No /proc: the name vmre was started by.
		exe, _ = exec.LookPath(os.Args[0])
	}
	// The engine gets a process group of its own, so that a signal to the
	// init's group (Ctrl-C at a container's terminal reaches every member)
	// reaches it once, passed on, not twice: two SIGINTs are vmre run's
	// "stop waiting" (shutdownSignals). On the init's controlling terminal
	// its group is made the foreground one, as tini does, so that Ctrl-C
	// goes to it directly and it may write to the terminal.
	attr := &syscall.SysProcAttr{Setpgid: true}
	if _, err := unix.IoctlGetInt(0, unix.TIOCGPGRP); err == nil {
		attr.Foreground, attr.Ctty = true, 0
	}
	child, err := syscall.ForkExec(exe, os.Args, &syscall.ProcAttr{Env: os.Environ(), Files: []uintptr{0, 1, 2}, Sys: attr})
	if err != nil {
		fmt.Fprintf(os.Stderr, "vmre run: as the PID namespace's init, start vmre run: %v\n", err)
		return exitFailure, true
	}
	for sig := range sigs {
		if sig != syscall.SIGCHLD {
			_ = syscall.Kill(child, sig.(syscall.Signal))
			continue
		}
		// One SIGCHLD may stand for several children that ended.
		for {
			var ws syscall.WaitStatus
			pid, err := syscall.Wait4(-1, &ws, syscall.WNOHANG, nil)
			if err != nil || pid <= 0 {
				break
			}
			if pid == child {
				if ws.Signaled() {
					return 128 + int(ws.Signal()), true
				}
				return ws.ExitStatus(), true
			}
		}
	}
	return exitFailure, true // not reached: sigs is never closed
}
