package logline

import (
	"bytes"
	"strconv"
	"time"
	"unicode/utf16"
	"unicode/utf8"

	"github.com/rs/zerolog"
)

// maxJSONDepth is encoding/json's nesting limit, so that the two agree on
// what is valid.
const maxJSONDepth = 10000

// The keys a JSON log record keeps its level, message, time, logger and
// caller under, in order of preference: zerolog, zap, slog, logrus, hclog
// ("@"), go-kit ("lvl"), Google Cloud ("severity").
var (
	levelKeys  = []string{"level", "lvl", "severity", "@level"}
	msgKeys    = []string{"message", "msg", "@message"}
	timeKeys   = []string{"time", "ts", "timestamp", "@timestamp"}
	loggerKeys = []string{"logger", "@module"}
	callerKeys = []string{"caller", "@caller"}
)

// member is one top-level member of a JSON object: b[start:end] is
// `"key": value`, the value b[val:end].
type member struct {
	start, val, end int
	key             []byte // unescaped
	drop            bool
}

// parseJSON parses b as one JSON object and fills l from it. It reports
// false, leaving l alone, when b is not exactly one valid JSON object
// (surrounding whitespace allowed), so that a line encoding/json rejects is
// never read as a record. A value under a level, message, time, logger or
// caller key that is not usable as one (a message that is no string, a time
// that does not parse) stays among the fields.
func (p *Parser) parseJSON(b []byte, l *Line) bool {
	i := skipWS(b, 0)
	if i >= len(b) || b[i] != '{' {
		return false
	}
	members := p.members[:0]
	i = skipWS(b, i+1)
	if i < len(b) && b[i] == '}' {
		i++
	} else {
		for {
			if i >= len(b) || b[i] != '"' {
				return false
			}
			start := i
			keyEnd, keyEscaped, ok := scanString(b, i)
			if !ok {
				return false
			}
			key := b[i+1 : keyEnd-1]
			if keyEscaped {
				key = appendUnquote(nil, key)
			}
			i = skipWS(b, keyEnd)
			if i >= len(b) || b[i] != ':' {
				return false
			}
			i = skipWS(b, i+1)
			val := i
			end, _, ok := scanValue(b, i, 1)
			if !ok {
				return false
			}
			members = append(members, member{start: start, val: val, end: end, key: key})
			i = skipWS(b, end)
			if i < len(b) && b[i] == ',' {
				i = skipWS(b, i+1)
				continue
			}
			if i < len(b) && b[i] == '}' {
				i++
				break
			}
			return false
		}
	}
	p.members = members
	if skipWS(b, i) != len(b) {
		return false
	}
	l.Format = JSON
	l.Level = zerolog.InfoLevel
	if m := pick(b, members, levelKeys, isLevel); m != nil {
		v := b[m.val:m.end]
		if v[0] == '"' {
			l.setLevel(p.unquote(&p.level, v))
		} else if lv, ok := levelNumber(v); ok {
			l.Level = lv
		} else {
			l.LevelText = v
		}
		dropKey(members, m.key)
	}
	if m := pick(b, members, msgKeys, isString); m != nil {
		l.Message = p.unquote(&p.msg, b[m.val:m.end])
		dropKey(members, m.key)
	}
	if m := pick(b, members, timeKeys, func(v []byte) bool { return p.jsonTime(v, l) }); m != nil {
		dropKey(members, m.key)
	}
	if m := pick(b, members, loggerKeys, isString); m != nil {
		l.Logger = p.unquote(&p.logger, b[m.val:m.end])
		dropKey(members, m.key)
	}
	if m := pick(b, members, callerKeys, isString); m != nil {
		l.Caller = p.unquote(&p.caller, b[m.val:m.end])
		dropKey(members, m.key)
	}
	f := append(p.fields[:0], '{')
	for _, m := range members {
		if m.drop {
			continue
		}
		if len(f) > 1 {
			f = append(f, ',')
		}
		f = append(f, b[m.start:m.end]...)
	}
	p.fields = f
	if len(f) > 1 {
		l.Fields = append(f, '}')
		p.fields = l.Fields
	}
	return true
}

// pick returns the last member (as encoding/json keeps the last of
// duplicate keys) under the first key of keys that b has, if its value is
// usable; nil when there is none.
func pick(b []byte, members []member, keys []string, usable func([]byte) bool) *member {
	for _, k := range keys {
		for j := len(members) - 1; j >= 0; j-- {
			m := &members[j]
			if string(m.key) != k {
				continue
			}
			if m.drop || !usable(b[m.val:m.end]) {
				break
			}
			return m
		}
	}
	return nil
}

// dropKey leaves every member named key out of the fields.
func dropKey(members []member, key []byte) {
	for j := range members {
		if bytes.Equal(members[j].key, key) {
			members[j].drop = true
		}
	}
}

func isString(v []byte) bool { return v[0] == '"' }
func isLevel(v []byte) bool  { return v[0] == '"' || v[0] == '-' || '0' <= v[0] && v[0] <= '9' }

// jsonTime sets l.PluginTime from a time value: an RFC 3339 or ISO 8601
// string, or a number of seconds (zap's "ts"), milliseconds, microseconds
// or nanoseconds since the epoch, told apart by size.
func (p *Parser) jsonTime(v []byte, l *Line) bool {
	if v[0] == '"' {
		t, ok := parseTimestamp(p.unquote(&p.scratch, v))
		if ok {
			l.PluginTime = t
		}
		return ok
	}
	f, err := strconv.ParseFloat(string(v), 64)
	if err != nil || f <= 0 {
		return false
	}
	switch {
	case f < 1e11:
		l.PluginTime = time.Unix(0, int64(f*1e9))
	case f < 1e14:
		l.PluginTime = time.UnixMilli(int64(f))
	case f < 1e17:
		l.PluginTime = time.UnixMicro(int64(f))
	default:
		l.PluginTime = time.Unix(0, int64(f))
	}
	return true
}

// Layouts of the textual timestamps JSON and logfmt records carry: RFC 3339
// (zerolog, slog, logrus, hclog) and zap's ISO 8601 encoder (no colon in
// the zone).
var timestampLayouts = []string{time.RFC3339Nano, "2006-01-02T15:04:05.000Z0700", "2006-01-02T15:04:05Z0700", "2006-01-02 15:04:05.999999999Z07:00"}

func parseTimestamp(s []byte) (time.Time, bool) {
	for _, layout := range timestampLayouts {
		if t, err := time.Parse(layout, string(s)); err == nil {
			return t, true
		}
	}
	return time.Time{}, false
}

// unquote returns the body of the JSON string literal v (with its quotes)
// unescaped; it uses *buf only when v holds escapes, and strips escape
// sequences an escaped ESC would bring back.
func (p *Parser) unquote(buf *[]byte, v []byte) []byte {
	body := v[1 : len(v)-1]
	if bytes.IndexByte(body, '\\') < 0 {
		return body
	}
	u := appendUnquote(p.scratch2[:0], body)
	p.scratch2 = u
	*buf = appendClean((*buf)[:0], u)
	return *buf
}

// appendUnquote appends the unescaped body of a valid JSON string literal
// (without quotes) to dst, as encoding/json decodes it: an unpaired
// surrogate becomes U+FFFD.
func appendUnquote(dst, body []byte) []byte {
	for i := 0; i < len(body); i++ {
		c := body[i]
		if c != '\\' || i+1 >= len(body) {
			dst = append(dst, c)
			continue
		}
		i++
		switch body[i] {
		case 'b':
			dst = append(dst, '\b')
		case 'f':
			dst = append(dst, '\f')
		case 'n':
			dst = append(dst, '\n')
		case 'r':
			dst = append(dst, '\r')
		case 't':
			dst = append(dst, '\t')
		case 'u':
			r := hex4(body[i+1:])
			i += 4
			if utf16.IsSurrogate(r) {
				r2 := rune(-1)
				if i+6 < len(body)+0 && body[i+1] == '\\' && body[i+2] == 'u' {
					r2 = hex4(body[i+3:])
				}
				if d := utf16.DecodeRune(r, r2); d != utf8.RuneError {
					dst = utf8.AppendRune(dst, d)
					i += 6
					continue
				}
				r = utf8.RuneError
			}
			dst = utf8.AppendRune(dst, r)
		default: // '"', '\\', '/'
			dst = append(dst, body[i])
		}
	}
	return dst
}

func hex4(b []byte) rune {
	if len(b) < 4 {
		return -1
	}
	var r rune
	for _, c := range b[:4] {
		switch {
		case '0' <= c && c <= '9':
			c -= '0'
		case 'a' <= c && c <= 'f':
			c -= 'a' - 10
		case 'A' <= c && c <= 'F':
			c -= 'A' - 10
		default:
			return -1
		}
		r = r<<4 | rune(c)
	}
	return r
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
				if i+4 >= len(b) || hex4(b[i+1:]) < 0 {
					return 0, false, false
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
