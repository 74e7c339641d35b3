package main

import (
	"fmt"
	"io"
	"strings"
	"unicode"

	"github.com/rs/zerolog"
)

// consoleWriter is zerolog's ConsoleWriter with millisecond times and every
// message and field value passed through escapeControl: plugin output goes
// into both, and a terminal must not obey its ESC, CR or NUL (a plugin
// could move the cursor or print what looks like an engine line).
func consoleWriter(out io.Writer, noColor bool) zerolog.ConsoleWriter {
	return zerolog.ConsoleWriter{
		Out:        out,
		TimeFormat: "15:04:05.000",
		NoColor:    noColor,
		FormatMessage: func(i any) string {
			if i == nil {
				return ""
			}
			return escapeControl(fmt.Sprint(i))
		},
		FormatFieldValue:    consoleValue,
		FormatErrFieldValue: consoleValue,
	}
}

// consoleValue renders a field's value for the console, escaped. The
// ConsoleWriter hands over a value that is neither a string nor a number
// (an object such as a plugin's own fields, an array, a boolean) as its
// JSON encoding in a []byte, which is text, not a list of bytes.
func consoleValue(i any) string {
	if b, ok := i.([]byte); ok {
		return escapeControl(string(b))
	}
	return escapeControl(fmt.Sprint(i))
}

// escapeControl writes the control characters of s as escapes: "\n",
// "\r", "\t" and "\x1b" style, so that printing s never moves the cursor
// or starts a new line.
func escapeControl(s string) string {
	if !strings.ContainsFunc(s, unicode.IsControl) {
		return s
	}
	var b strings.Builder
	for _, r := range s {
		switch {
		case r == '\n':
			b.WriteString(`\n`)
		case r == '\r':
			b.WriteString(`\r`)
		case r == '\t':
			b.WriteString(`\t`)
		case unicode.IsControl(r):
			fmt.Fprintf(&b, `\x%02x`, r)
		default:
			b.WriteRune(r)
		}
	}
	return b.String()
}
