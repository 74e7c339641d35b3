package main

import (
	"github.com/coreos/go-systemd/v22/daemon"
	"github.com/rs/zerolog"
)

// notifyManager tells the service manager that started vmre (systemd with
// Type=notify, which sets NOTIFY_SOCKET) about a state change: READY=1 once
// the API port serves and the runtimes are launched, RELOADING=1 around a
// config reload, STOPPING=1 when the shutdown begins. Without NOTIFY_SOCKET
// it does nothing. A failure is logged, never fatal: the unit's own
// timeouts then decide.
//
// Plugins inherit NOTIFY_SOCKET with the rest of the environment; systemd
// accepts messages only from the main process (NotifyAccess=main, the
// default with Type=notify), so a plugin cannot speak for vmre.
func notifyManager(log zerolog.Logger, state string) {
	sent, err := daemon.SdNotify(false, state)
	switch {
	case err != nil:
		log.Warn().Err(err).Str("state", state).Msg("notify service manager")
	case sent:
		log.Debug().Str("state", state).Msg("service manager notified")
	}
}
