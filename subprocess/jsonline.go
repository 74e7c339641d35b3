package subprocess

import (
	"bytes"
	"unicode/utf8"

	"github.com/rs/zerolog"
)

// jsonLine is what the bridge lifts out of a JSON log line.
type jsonLine struct {
	level zerolog.Level
	// msg is the body of the "message" (or else "msg") string, without
	// quotes; nil when there is none. msgEscaped says it holds escapes.
	msg        []byte
	msgEscaped bool
}

// maxJSONDepth bounds nesting; deeper lines are logged as plain text.
const maxJSONDepth = 32

// parseJSONLine reports whether b is exactly one valid JSON object with a
// top-level "level" the bridge understands, and returns that level and the
// message. It validates the whole object, so b can be embedded in the log
// as raw JSON, and allocates nothing.
//
// Levels: the names zerolog, zap, logrus and slog write, in any case
// (trace, debug, info, warn, warning, error, dpanic, panic, fatal), and
// pino's numbers (10 trace ... 60 fatal).
func parseJSONLine(b []byte) (jsonLine, bool) {
	var (
		out      jsonLine
		hasLevel bool
		msgRank  int // 2: from "message", 1: from "msg"
	)
	i := skipWS(b, 0)
	if i >= len(b) || b[i] != '{' || !utf8.Valid(b) {
		return out, false
	}
	i = skipWS(b, i+1)
	if i < len(b) && b[i] == '}' {
		i++
	} else {
		for {
			if i >= len(b) || b[i] != '"' {
				return out, false
			}
			keyEnd, keyEscaped, ok := scanString(b, i)
			if !ok {
				return out, false
			}
			key := b[i+1 : keyEnd-1]
			i = skipWS(b, keyEnd)
			if i >= len(b) || b[i] != ':' {
				return out, false
			}
			i = skipWS(b, i+1)
			valStart := i
			valEnd, valEscaped, ok := scanValue(b, i, 1)
			if !ok {
				return out, false
			}
			val := b[valStart:valEnd]
			if !keyEscaped {
				switch string(key) {
				case "level":
					out.level, hasLevel = levelOf(val, valEscaped)
				case "message":
					if val[0] == '"' {
						out.msg, out.msgEscaped, msgRank = val[1:len(val)-1], valEscaped, 2
					}
				case "msg":
					if val[0] == '"' && msgRank < 2 {
						out.msg, out.msgEscaped, msgRank = val[1:len(val)-1], valEscaped, 1
					}
				}
			}
			i = skipWS(b, valEnd)
			if i < len(b) && b[i] == ',' {
				i = skipWS(b, i+1)
				continue
			}
			if i < len(b) && b[i] == '}' {
				i++
				break
			}
			return out, false
		}
	}
	if skipWS(b, i) != len(b) || !hasLevel {
		return out, false
	}
	return out, true
}

// levelOf maps a "level" value (a JSON string literal with quotes, or a
// number) to a zerolog level.
func levelOf(val []byte, escaped bool) (zerolog.Level, bool) {
	if val[0] != '"' {
		switch string(val) { // pino
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
	if escaped {
		return zerolog.NoLevel, false
	}
	name := val[1 : len(val)-1]
	for _, l := range levelNames {
		if bytes.EqualFold(name, l.name) {
			return l.level, true
		}
	}
	return zerolog.NoLevel, false
}

var levelNames = []struct {
	name  []byte
	level zerolog.Level
}{
	{[]byte("info"), zerolog.InfoLevel},
	{[]byte("debug"), zerolog.DebugLevel},
	{[]byte("warn"), zerolog.WarnLevel},
	{[]byte("error"), zerolog.ErrorLevel},
	{[]byte("trace"), zerolog.TraceLevel},
	{[]byte("warning"), zerolog.WarnLevel},
	{[]byte("fatal"), zerolog.FatalLevel},
	{[]byte("panic"), zerolog.PanicLevel},
	// zap's DPanic panics only in development; in production it logs.
	{[]byte("dpanic"), zerolog.ErrorLevel},
}

func skipWS(b []byte, i int) int {
	for i < len(b) && (b[i] == ' ' || b[i] == '\t' || b[i] == '\n' || b[i] == '\r') {
		i++
	}
	return i
}

// scanString scans the string literal starting at b[i] == '"' and returns
// the index after its closing quote and whether it holds escapes.
func scanString(b []byte, i int) (end int, escaped, ok bool) {
	for i++; i < len(b); i++ {
		switch c := b[i]; {
		case c == '"':
			return i + 1, escaped, true
		case c == '\\':
			escaped = true
			i++
			if i >= len(b) {
				return 0, false, false
			}
			switch b[i] {
			case '"', '\\', '/', 'b', 'f', 'n', 'r', 't':
			case 'u':
				if i+4 >= len(b) {
					return 0, false, false
				}
				for _, h := range b[i+1 : i+5] {
					if !isHex(h) {
						return 0, false, false
					}
				}
				i += 4
			default:
				return 0, false, false
			}
		case c < 0x20:
			return 0, false, false
		}
	}
	return 0, false, false
}

func isHex(c byte) bool {
	return '0' <= c && c <= '9' || 'a' <= c && c <= 'f' || 'A' <= c && c <= 'F'
}

// scanValue scans the JSON value starting at b[i] and returns the index
// after it; escaped reports escapes in a string value.
func scanValue(b []byte, i, depth int) (end int, escaped, ok bool) {
	if i >= len(b) {
		return 0, false, false
	}
	switch c := b[i]; {
	case c == '"':
		return scanString(b, i)
	case c == '{':
		end, ok = scanContainer(b, i, depth, '}', true)
		return end, false, ok
	case c == '[':
		end, ok = scanContainer(b, i, depth, ']', false)
		return end, false, ok
	case c == 't':
		return scanLiteral(b, i, "true")
	case c == 'f':
		return scanLiteral(b, i, "false")
	case c == 'n':
		return scanLiteral(b, i, "null")
	case c == '-' || '0' <= c && c <= '9':
		end, ok = scanNumber(b, i)
		return end, false, ok
	}
	return 0, false, false
}

func scanLiteral(b []byte, i int, lit string) (int, bool, bool) {
	if len(b)-i >= len(lit) && string(b[i:i+len(lit)]) == lit {
		return i + len(lit), false, true
	}
	return 0, false, false
}

// scanContainer scans an object (keyed) or array starting at b[i].
func scanContainer(b []byte, i, depth int, closer byte, keyed bool) (int, bool) {
	if depth >= maxJSONDepth {
		return 0, false
	}
	i = skipWS(b, i+1)
	if i < len(b) && b[i] == closer {
		return i + 1, true
	}
	for {
		if keyed {
			if i >= len(b) || b[i] != '"' {
				return 0, false
			}
			end, _, ok := scanString(b, i)
			if !ok {
				return 0, false
			}
			i = skipWS(b, end)
			if i >= len(b) || b[i] != ':' {
				return 0, false
			}
			i = skipWS(b, i+1)
		}
		end, _, ok := scanValue(b, i, depth+1)
		if !ok {
			return 0, false
		}
		i = skipWS(b, end)
		if i >= len(b) {
			return 0, false
		}
		switch b[i] {
		case ',':
			i = skipWS(b, i+1)
		case closer:
			return i + 1, true
		default:
			return 0, false
		}
	}
}

// scanNumber scans -?(0|[1-9][0-9]*)(\.[0-9]+)?([eE][+-]?[0-9]+)?.
func scanNumber(b []byte, i int) (int, bool) {
	if b[i] == '-' {
		i++
	}
	switch {
	case i < len(b) && b[i] == '0':
		i++
	case i < len(b) && '1' <= b[i] && b[i] <= '9':
		i = skipDigits(b, i)
	default:
		return 0, false
	}
	if i < len(b) && b[i] == '.' {
		j := skipDigits(b, i+1)
		if j == i+1 {
			return 0, false
		}
		i = j
	}
	if i < len(b) && (b[i] == 'e' || b[i] == 'E') {
		i++
		if i < len(b) && (b[i] == '+' || b[i] == '-') {
			i++
		}
		j := skipDigits(b, i)
		if j == i {
			return 0, false
		}
		i = j
	}
	return i, true
}

func skipDigits(b []byte, i int) int {
	for i < len(b) && '0' <= b[i] && b[i] <= '9' {
		i++
	}
	return i
}
