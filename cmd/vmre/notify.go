package main

import (
	"context"
	"time"

	"github.com/coreos/go-systemd/v22/daemon"
	"github.com/rs/zerolog"

	"github.com/vmre/vmre/engine"
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

// keepWatchdog pings systemd's watchdog (WatchdogSec=, which sets
// WATCHDOG_USEC) with WATCHDOG=1 at half its interval until ctx ends,
// each ping once eng has answered a call that takes its lock: an engine
// stuck on it stops the pings, and systemd kills vmre and, with
// Restart=on-failure, starts it again. It removes WATCHDOG_USEC and
// WATCHDOG_PID from vmre's environment first, so that plugins, which
// inherit it, do not take the watchdog for theirs. Without WATCHDOG_USEC,
// or with a WATCHDOG_PID that is not vmre's, it does nothing.
func keepWatchdog(ctx context.Context, log zerolog.Logger, eng *engine.Engine) {
	interval, err := daemon.SdWatchdogEnabled(true)
	if err != nil {
		log.Warn().Err(err).Msg("systemd watchdog: not pinged")
		return
	}
	if interval <= 0 {
		return
	}
	log.Info().Str("interval", interval.String()).Msg("systemd watchdog: pinging it every half interval")
	go func() {
		t := time.NewTicker(interval / 2)
		defer t.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case <-t.C:
				eng.LiveCount()
				notifyManager(log, daemon.SdNotifyWatchdog)
			}
		}
	}()
}
