//go:build linux

package subprocess

import (
	"os"
	"os/exec"
)

// startProcess starts cmd as cmd.Start does, through os.StartProcess and
// without cmd.Start's extra work, when that work would change nothing:
// the standard streams are files already (no pipe, no copying goroutine),
// cmd.Env is the ready environment pluginEnv built with each key once
// (cmd.Start would deduplicate it again: a map of all its keys at every
// launch), and there is no context to watch. cmd.Process is set as
// cmd.Start sets it, so cmd.Wait reaps the process. Any other cmd is
// started by cmd.Start.
//
// cmd must not be started again: cmd.Start does not know it was.
func startProcess(cmd *exec.Cmd) error {
	stdin, inFile := cmd.Stdin.(*os.File)
	stdout, outFile := cmd.Stdout.(*os.File)
	stderr, errFile := cmd.Stderr.(*os.File)
	if !inFile || !outFile || !errFile || cmd.Env == nil || cmd.Cancel != nil || cmd.WaitDelay != 0 || cmd.Err != nil || cmd.Path == "" {
		return cmd.Start()
	}
	files := make([]*os.File, 0, 3+len(cmd.ExtraFiles))
	files = append(files, stdin, stdout, stderr)
	files = append(files, cmd.ExtraFiles...)
	argv := cmd.Args
	if len(argv) == 0 {
		argv = []string{cmd.Path}
	}
	proc, err := os.StartProcess(cmd.Path, argv, &os.ProcAttr{Dir: cmd.Dir, Files: files, Env: cmd.Env, Sys: cmd.SysProcAttr})
	if err != nil {
		return err
	}
	cmd.Process = proc
	return nil
}
