// Package subprocess launches VM plugin binaries, runs the handshake with
// them and supervises them until they stop.
//
// [Bootstrap] starts a plugin with the address of a private handshake
// server in its environment, waits for the plugin's Initialize call and
// returns as soon as the outcome is known: a [Status] and a running
// [*Process], or an error that says why (version mismatch, timeout, or the
// process exiting, with its exit status and last stderr lines).
//
// # Output
//
// The plugin's stdout and stderr are logged line by line into
// Config.Log with the fields "vm" (Config.Name), "pid" and "stream"; the
// line is the message. A line that is a JSON object with a "level" field
// (zerolog, zap, logrus, slog, pino) keeps its level, its "message" or
// "msg" becomes the message and the whole object is kept in the "fields"
// field. A line starting a Go panic ("panic: ", "fatal error: ") is logged
// at error with "panic": true. Other lines are logged at info on both
// streams: Go's log package, zerolog and zap write everyday logs to stderr,
// so stderr says nothing about severity; filter on "stream" to tell them
// apart. Lines longer than Config.MaxLineBytes are split into chunks
// ("partial": true on all but the last), never dropped; memory stays
// bounded whatever the plugin writes, and a quiet plugin holds no read
// buffer. A plugin that closes its stdout or stderr is not killed for it.
//
// # Stopping, and no orphans
//
// On Linux each plugin runs in a process group of its own. [Process.Stop]
// sends SIGTERM to the group, waits Config.GracefulTimeout, then SIGKILLs
// the group; when the plugin exits, whatever is left of its group is
// SIGKILLed before it is reaped, so a plugin's children never outlive it.
// If the engine itself dies, even by SIGKILL, plugins die with it through
// their parent-death signal (SIGKILL), and a watchdog shell kills their
// groups (see [WatchdogFunc]). A child that moves itself to another
// process group or session escapes all of this; only cgroups could catch
// it.
//
// Two goroutines of this package live for the life of the program once a
// plugin has been launched: the thread that starts plugins
// ([SpawnerFunc]) and, on Linux, the watchdog's waiter ([WatchdogFunc]).
// Every other goroutine belongs to one plugin and ends before its
// [Process.Done] closes.
//
// # Other systems
//
// The package builds for darwin and windows with a weaker stop: no process
// group, no parent-death signal and no watchdog, so only the plugin itself
// is signalled; on Windows the graceful stop is a kill.
package subprocess
