package logline

import (
	"strconv"

	"github.com/rs/zerolog"
)

// levelWord maps a level name, in any case, to a zerolog level: the names
// zerolog, zap, logrus, slog, hclog, go-ethereum and avalanchego write, and
// slog's offsets ("INFO+2", "ERROR-1": the level of the value they add up
// to). ok is false for a word that names no level.
func levelWord(w []byte) (zerolog.Level, bool) {
	// The words most lines carry, as written, before any lowering.
	switch string(w) {
	case "INFO", "info":
		return zerolog.InfoLevel, true
	case "WARN", "warn":
		return zerolog.WarnLevel, true
	case "ERROR", "error":
		return zerolog.ErrorLevel, true
	case "DEBUG", "debug":
		return zerolog.DebugLevel, true
	}
	if len(w) == 0 || len(w) > 16 {
		return zerolog.NoLevel, false
	}
	var lower [16]byte
	for i, c := range w {
		if 'A' <= c && c <= 'Z' {
			c += 'a' - 'A'
		}
		lower[i] = c
	}
	s := lower[:len(w)]
	switch string(s) {
	// logrus on a terminal cuts its level names to four letters.
	case "trace", "verbo", "verbose", "trac":
		return zerolog.TraceLevel, true
	case "debug", "dbug", "debu":
		return zerolog.DebugLevel, true
	case "info", "information", "notice":
		return zerolog.InfoLevel, true
	case "warn", "warning":
		return zerolog.WarnLevel, true
	// zap's DPanic panics only in development; in production it logs.
	case "error", "err", "eror", "erro", "dpanic":
		return zerolog.ErrorLevel, true
	// go-ethereum's Crit exits the process after logging, as fatal does.
	case "fatal", "crit", "critical", "alert", "emerg", "emergency", "fata":
		return zerolog.FatalLevel, true
	case "panic", "pani":
		return zerolog.PanicLevel, true
	}
	for i, c := range s {
		if c != '+' && c != '-' {
			continue
		}
		base, ok := slogBase(s[:i])
		off, err := strconv.Atoi(string(s[i:]))
		if !ok || err != nil {
			return zerolog.NoLevel, false
		}
		return slogLevel(base + off), true
	}
	return zerolog.NoLevel, false
}

func slogBase(s []byte) (int, bool) {
	switch string(s) {
	case "debug":
		return -4, true
	case "info":
		return 0, true
	case "warn":
		return 4, true
	case "error":
		return 8, true
	}
	return 0, false
}

// slogLevel maps a slog.Level value onto zerolog: a value counts as the
// highest named level at or below it.
func slogLevel(v int) zerolog.Level {
	switch {
	case v >= 8:
		return zerolog.ErrorLevel
	case v >= 4:
		return zerolog.WarnLevel
	case v >= 0:
		return zerolog.InfoLevel
	case v >= -4:
		return zerolog.DebugLevel
	}
	return zerolog.TraceLevel
}

// levelNumber maps a numeric level (pino's and bunyan's 10 trace ... 60
// fatal) onto zerolog.
func levelNumber(n []byte) (zerolog.Level, bool) {
	switch string(n) {
	case "10":
		return zerolog.TraceLevel, true
	case "20":
		return zerolog.DebugLevel, true
	case "30":
		return zerolog.InfoLevel, true
	case "40":
		return zerolog.WarnLevel, true
	case "50":
		return zerolog.ErrorLevel, true
	case "60":
		return zerolog.FatalLevel, true
	}
	return zerolog.NoLevel, false
}

// setLevel sets l's level from a level word; an unknown word is kept in
// LevelText and the level is info.
func (l *Line) setLevel(w []byte) {
	if lv, ok := levelWord(w); ok {
		l.Level = lv
		return
	}
	l.Level, l.LevelText = zerolog.InfoLevel, w
}

const (
	zerologInfo  = zerolog.InfoLevel
	zerologWarn  = zerolog.WarnLevel
	zerologError = zerolog.ErrorLevel
	zerologFatal = zerolog.FatalLevel
)
