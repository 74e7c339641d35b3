package subprocess

import (
	"os"
	"os/exec"
	"runtime"
	"sync"
)

// Every plugin is started from one goroutine locked to its OS thread for
// the life of the program.
//
// The parent-death signal (PR_SET_PDEATHSIG, see NewCmd) fires when the
// *thread* that forked the child exits, not only when the process does
// (golang/go#27505). Go ends a thread when a goroutine locked to it returns
// while still locked, so a plugin started from an arbitrary goroutine can
// be SIGKILLed long before the engine dies, the day some caller's goroutine
// happens to run on a thread that is later retired. Starting every plugin
// from a thread that never exits ties the signal to the engine's death
// alone. The goroutine is process-wide on purpose (one thread however many
// launches; fork is serialized by syscall.ForkLock anyway) and never ends:
// leak checkers ignore it by its name, [SpawnerFunc].
//
// This is the package's one piece of global state besides the watchdog,
// the reader-buffer pool and the plugins' shared /dev/null (devNull).
type spawnRequest struct {
	cmd  *exec.Cmd
	errc chan error
}

var spawner struct {
	once sync.Once
	reqs chan spawnRequest
}

// SpawnerFunc is the function name of the process-wide goroutine that
// starts plugins; it runs for the life of the program. Pass it to a
// goroutine leak checker, e.g. goleak.IgnoreAnyFunction(subprocess.SpawnerFunc).
const SpawnerFunc = "github.com/vmre/vmre/subprocess.spawnLoop"

// startCmd starts cmd (see startProcess) on the spawner thread.
func startCmd(cmd *exec.Cmd) error {
	spawner.once.Do(func() {
		spawner.reqs = make(chan spawnRequest)
		go spawnLoop(spawner.reqs)
	})
	errc := make(chan error, 1)
	spawner.reqs <- spawnRequest{cmd: cmd, errc: errc}
	return <-errc
}

func spawnLoop(reqs <-chan spawnRequest) {
	// Locked and never unlocked or returned from: the thread lives as long
	// as the process, and so do the parent-death signals of its children.
	runtime.LockOSThread()
	for req := range reqs {
		req.errc <- startProcess(req.cmd)
	}
}

// devNull returns the read-only /dev/null every plugin started with a nil
// Stdin gets as its standard input, or nil if it cannot be opened (exec
// then opens one for each start, as it does for a nil Stdin). os/exec
// would open and close a /dev/null of its own at every start, with the
// poller registration that goes with it, for a file that reads the same
// for every plugin; it never closes a Stdin it was given, so this one
// stays open for the life of the engine.
var devNull = sync.OnceValue(func() *os.File {
	f, err := os.Open(os.DevNull)
	if err != nil {
		return nil
	}
	return f
})
