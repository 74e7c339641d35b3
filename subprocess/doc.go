// Package subprocess launches VM plugin binaries, runs the handshake with
// them and supervises them until they stop.
//
// [Bootstrap] starts a plugin with the address of a private handshake
// server in its environment, waits for the plugin's Initialize call and
// returns as soon as the outcome is known: a running [*Process], or an
// error that says why (version mismatch, timeout, or the process exiting,
// with its exit status and last stderr lines).
//
// # Who may handshake
//
// avalanchego's handshake is "first caller wins": any local process that
// finds the engine's loopback port can call Initialize first and point the
// engine at a server of its own. Bootstrap closes that. Every launch gets a
// fresh random secret in the plugin's environment (vmre.HandshakeTokenKey),
// which vmre's client package sends back in the vmre.HandshakeTokenHeader
// header. Config.HandshakeAuth chooses what a caller must show:
//
//	token          the launch's secret; callers without it get
//	               unauthenticated
//	peer           (Linux) the caller's TCP socket must be held by the
//	               launched process or one of its descendants, found
//	               through the kernel's socket table and /proc; others get
//	               permission_denied
//	token-or-peer  (Linux) either one: plugins using vmre's client pass by
//	               token, plugins built against avalanchego or luxd (plain
//	               grpc-go clients that cannot send the secret) pass by peer
//	none           anyone, as in avalanchego: a local process that wins
//	               the race becomes the runtime. Only for debugging.
//
// The default is token-or-peer on Linux and token on every other system
// (macOS, Windows, the BSDs), where a socket's owner cannot be looked up;
// there, plugins that predate vmre need HandshakeAuth "none" and run with
// that risk. A refused call decides nothing, so the real plugin's
// handshake still succeeds after a foreign process tried first; each
// refusal is logged at warn with the caller's address (and pid, if found).
// The secret never appears in a log line or an error. A call with a valid
// token costs a hash and a comparison; the socket lookup runs only for
// calls without one, at most two at a time per launch.
//
// # Pre-flight checks
//
// Before it opens a listener or starts anything, Bootstrap checks the file
// cmd would execute: it must exist, be a regular file with execute
// permission (and, on Linux, on a filesystem that allows exec), and be an
// ELF, Mach-O or PE binary for this OS and architecture, or a "#!" script
// on Unix; the interpreter an ELF binary (its dynamic loader) or a "#!"
// line names must exist. With Config.SHA256 set, its contents must hash to
// the pin. The checks read one open file, and on Linux a binary is
// executed through that descriptor (/proc/self/fd/N), so a path renamed,
// replaced or re-linked after the check cannot swap in another binary;
// elsewhere the path is executed by name after the checks (Windows keeps
// the file from being renamed or deleted in between; macOS and the BSDs
// leave a short window). On Linux the binary inherits that one read-only
// descriptor, and is executed through a link to it named like the file
// (removed once the process has started), so the process keeps its name in
// ps, top and pgrep (/proc/PID/comm) instead of the descriptor's number;
// cmd.Args, and so its argv[0], are unchanged. A "#!" script is executed
// by its checked absolute path, which its interpreter gets as $0 (so a
// wrapper can exec "$(dirname "$0")/real-vm"), and inherits no descriptor,
// which leaves the same short window as on macOS; with Config.SHA256 set
// it is executed through the descriptor instead, so that the pinned
// contents are what runs, and its $0 is then /proc/self/fd/N.
//
// # Environment
//
// Config.EnvPolicy "inherit" (the default) passes cmd.Env, or the
// engine's environment if cmd.Env is nil, to the plugin; in that case, as
// os/exec does, PWD is set to cmd.Dir made absolute when cmd.Dir is set
// (not on Windows). "clean" passes only the variables named in
// Config.EnvKeep (default PATH, HOME, USER, LOGNAME, TMPDIR, TZ, LANG and
// LC_*) of that same base. Config.Env entries are added under either
// policy. Whatever the policy, inherited engine-address variables and
// handshake secrets are dropped (an engine running as another engine's
// plugin must not pass its own on) and the launch's own are set.
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
// Each line's event carries the time the engine read it (Line.Time) in its
// context, so a logtime.Hook on Config.Log stamps the line with that
// time without reading the clock per line.
//
// # Stopping, and no orphans
//
// On Linux each plugin runs in a session, and so a process group, of its
// own. [Process.Stop] sends SIGTERM to the group, waits
// Config.GracefulTimeout, then SIGKILLs the group; when the plugin exits,
// whatever is left of its group is SIGKILLed before it is reaped, so a
// plugin's children never outlive it. If the engine itself dies, even by
// SIGKILL, plugins die with it through their parent-death signal
// (SIGKILL), and a watchdog shell kills their groups (see [WatchdogFunc]).
// A child cannot join a group of the engine's session (setpgid stops at
// the session), but one that starts a session of its own escapes the
// group; with Config.CgroupRoot the plugin's cgroup catches it, on a stop
// and, through the watchdog, when the engine dies.
//
// Two goroutines of this package live for the life of the program once a
// plugin has been launched: the thread that starts plugins
// ([SpawnerFunc]) and, on Linux, the watchdog's waiter ([WatchdogFunc]).
// On Linux one more waits for the exits and the output of all plugins
// while any runs ([ExitWaiterFunc]) and ends once the last has exited: a
// plugin's output is read by a goroutine started when its pipe has data,
// which returns once the pipe is empty, so a quiet plugin holds none.
// Every other goroutine belongs to one plugin and ends before its
// [Process.Done] closes.
//
// # Other systems
//
// The package builds for darwin and windows with a weaker stop: no process
// group, no parent-death signal and no watchdog, so only the plugin itself
// is signalled; on Windows the graceful stop is a kill.
//
// # Configuration
//
// A launch takes one documented [Config] struct, as os/exec's Cmd does:
// zero fields mean the documented defaults, and settings that have a text
// form ([HandshakeAuth], [EnvPolicy]) are typed values with String and
// UnmarshalText, so a flag or a config file parses them once, at the edge.
package subprocess
