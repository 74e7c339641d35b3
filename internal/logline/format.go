package logline

import (
	"fmt"

	"github.com/vmre/vmre"
)

// Format is a plugin log format. As a setting it says how a runtime's lines
// are read: [Auto] recognises the format of each line, a fixed format parses
// every line as that format (a line that is not falls back to plain text),
// and [Raw] parses nothing. As a property of a [Line] it says which format
// the line was recognised as. The zero value is Auto.
type Format uint8

const (
	// Auto recognises each line's format on its own.
	Auto Format = iota
	// Raw takes every line as text: no format, no panic grouping.
	Raw
	// Plain is text in no known format: the whole line is the message.
	Plain
	// JSON is one JSON object per line: zerolog, zap's production
	// encoder, slog's JSONHandler, logrus, hclog (the "@" keys), pino.
	JSON
	// ZapConsole is zap's console encoder as avalanchego and luxd
	// configure it: "[01-02|15:04:05.000] LEVEL <logger> caller message
	// {fields}", with or without colour codes around the level.
	ZapConsole
	// Geth is go-ethereum's (and libevm's) terminal format: "WARN
	// [01-02|15:04:05.000] message   key=value ...".
	Geth
	// Logfmt is key=value pairs: slog's TextHandler, logrus's text
	// formatter without a terminal.
	Logfmt
	// Klog is klog's and glog's header: "E1206 21:46:25.946123 1234
	// file.go:12] message".
	Klog
	// Hclog is hclog's text format, as go-plugin hosts print it:
	// "2006-01-02T15:04:05.000Z0700 [ERROR] name: message: key=value".
	Hclog
	// Logrus is logrus's text formatter on a terminal: "WARN[0000]
	// message   key=value". (Without a terminal it writes Logfmt.)
	Logrus
)

var formatNames = [...]string{
	Auto:       "auto",
	Raw:        "raw",
	Plain:      "plain",
	JSON:       "json",
	ZapConsole: "zap-console",
	Geth:       "geth",
	Logfmt:     "logfmt",
	Klog:       "klog",
	Hclog:      "hclog",
	Logrus:     "logrus",
}

// String returns the format's name, as UnmarshalText accepts it.
func (f Format) String() string {
	if int(f) < len(formatNames) {
		return formatNames[f]
	}
	return fmt.Sprintf("Format(%d)", uint8(f))
}

// MarshalText returns the format's name.
func (f Format) MarshalText() ([]byte, error) {
	if int(f) >= len(formatNames) {
		return nil, fmt.Errorf("%w: log format %d", vmre.ErrInvalidConfig, uint8(f))
	}
	return []byte(formatNames[f]), nil
}

// UnmarshalText sets f from its name: auto, raw, plain, json, zap-console,
// geth, logfmt, klog, hclog or logrus; the empty text is auto. An unknown name wraps
// [vmre.ErrInvalidConfig].
func (f *Format) UnmarshalText(text []byte) error {
	if len(text) == 0 {
		*f = Auto
		return nil
	}
	for i, name := range formatNames {
		if string(text) == name {
			*f = Format(i)
			return nil
		}
	}
	return fmt.Errorf("%w: log format %q is not one of auto, raw, plain, json, zap-console, geth, logfmt, klog, hclog, logrus", vmre.ErrInvalidConfig, text)
}

// Valid reports whether f is one of the formats above.
func (f Format) Valid() bool { return int(f) < len(formatNames) }
