package logline

import (
	"bytes"
	"encoding/binary"
	"math/bits"
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
// caller under, each role's in order of preference: zerolog, zap, slog,
// logrus, hclog ("@"), go-kit ("lvl"), Google Cloud ("severity").
var (
	knownKeys  = [...]string{"level", "lvl", "severity", "@level", "message", "msg", "@message", "time", "ts", "timestamp", "@timestamp", "logger", "@module", "caller", "@caller"}
	levelKeys  = knownKeys[0:4]
	msgKeys    = knownKeys[4:7]
	timeKeys   = knownKeys[7:11]
	loggerKeys = knownKeys[11:13]
	callerKeys = knownKeys[13:15]
)

// knownKey returns the index of key in knownKeys, or -1.
func knownKey(key []byte) int8 {
	switch string(key) {
	case "level":
		return 0
	case "lvl":
		return 1
	case "severity":
		return 2
	case "@level":
		return 3
	case "message":
		return 4
	case "msg":
		return 5
	case "@message":
		return 6
	case "time":
		return 7
	case "ts":
		return 8
	case "timestamp":
		return 9
	case "@timestamp":
		return 10
	case "logger":
		return 11
	case "@module":
		return 12
	case "caller":
		return 13
	case "@caller":
		return 14
	}
	return -1
}

// member is one top-level member of a JSON object: b[start:end] is
// `"key": value`, the value b[val:end]; id is its key's index in
// knownKeys, or -1.
type member struct {
	start, val, end int
	id              int8
}

// jsonKeys tracks the known keys of one object: the last member under
// each (as encoding/json keeps the last of duplicate keys), and which keys
// were lifted out of the fields.
type jsonKeys struct {
	last   [len(knownKeys)]int32
	lifted uint16
}

// pick returns the last member under the first key of keys that has one
// whose value is usable, and marks the key lifted; nil when there is none.
func (k *jsonKeys) pick(b []byte, members []member, keys []string, usable func([]byte) bool) *member {
	first := len(knownKeys) - cap(keys) // keys is a slice of knownKeys
	for id := first; id < first+len(keys); id++ {
		if j := k.last[id]; j >= 0 {
			if m := &members[j]; usable(b[m.val:m.end]) {
				k.lifted |= 1 << id
				return m
			}
		}
	}
	return nil
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
	keys := jsonKeys{}
	for id := range keys.last {
		keys.last[id] = -1
	}
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
				key = appendUnquote(p.scratch[:0], key)
				p.scratch = key
			}
			id := knownKey(key)
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
			if id >= 0 {
				keys.last[id] = int32(len(members))
			}
			members = append(members, member{start: start, val: val, end: end, id: id})
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
	if m := keys.pick(b, members, levelKeys, isLevel); m != nil {
		v := b[m.val:m.end]
		if v[0] == '"' {
			l.setLevel(p.unquote(&p.level, v))
		} else if lv, ok := levelNumber(v); ok {
			l.Level = lv
		} else {
			l.LevelText = v
		}
	}
	if m := keys.pick(b, members, msgKeys, isString); m != nil {
		l.Message = p.unquote(&p.msg, b[m.val:m.end])
	}
	keys.pick(b, members, timeKeys, func(v []byte) bool { return p.jsonTime(v, l) })
	if m := keys.pick(b, members, loggerKeys, isString); m != nil {
		l.Logger = p.unquote(&p.logger, b[m.val:m.end])
	}
	if m := keys.pick(b, members, callerKeys, isString); m != nil {
		l.Caller = p.unquote(&p.caller, b[m.val:m.end])
	}
	f := append(p.fields[:0], '{')
	for _, m := range members {
		if m.id >= 0 && keys.lifted&(1<<m.id) != 0 {
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
	f, ok := parseDecimal(v)
	if !ok {
		var err error
		if f, err = strconv.ParseFloat(string(v), 64); err != nil {
			return false
		}
	}
	if f <= 0 {
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

// pow10 holds the powers of ten a float64 represents exactly.
var pow10 = [...]float64{1e0, 1e1, 1e2, 1e3, 1e4, 1e5, 1e6, 1e7, 1e8, 1e9, 1e10, 1e11, 1e12, 1e13, 1e14, 1e15, 1e16, 1e17, 1e18, 1e19, 1e20, 1e21, 1e22}

// parseDecimal parses a number "digits[.digits]" whose digits, as an
// integer, fit in float64's 53-bit mantissa, as strconv.ParseFloat does:
// both the integer and the power of ten are exact, so their quotient is
// the correctly rounded result (strconv's own exact fast path). ok is
// false for any other number.
func parseDecimal(v []byte) (float64, bool) {
	var mant uint64
	frac, dot := 0, false
	for i, c := range v {
		switch {
		case '0' <= c && c <= '9':
			if mant >= 1<<53/10 {
				return 0, false
			}
			mant = mant*10 + uint64(c-'0')
			if dot {
				frac++
			}
		case c == '.' && !dot && i > 0 && i < len(v)-1:
			dot = true
		default:
			return 0, false
		}
	}
	if len(v) == 0 || frac >= len(pow10) {
		return 0, false
	}
	return float64(mant) / pow10[frac], true
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
	// One comparison rules out every byte but the four, most often.
	for i < len(b) && b[i] <= ' ' && (b[i] == ' ' || b[i] == '\t' || b[i] == '\n' || b[i] == '\r') {
		i++
	}
	return i
}

// scanString scans the string literal starting at b[i] == '"' and returns
// the index after its closing quote and whether it holds escapes.
func scanString(b []byte, i int) (end int, escaped, ok bool) {
	i++
	for {
		// Skip eight bytes at a time to the first that is a quote, a
		// backslash or a control character (or, to keep the test
		// simple, 0x7f and above). The lowest flagged byte of the word
		// is exact: the test's borrows and carries only run upwards.
		for i+8 <= len(b) {
			if m := unsafeBytes(binary.LittleEndian.Uint64(b[i:])); m != 0 {
				i += bits.TrailingZeros64(m) >> 3
				break
			}
			i += 8
		}
		if i >= len(b) {
			return 0, false, false
		}
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
		i++
	}
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
		if i >= len(b) {
			return 0, false
		}
		// Strings and integers, most fields' values, without
		// scanValue's dispatch.
		var end int
		var ok bool
		switch c := b[i]; {
		case c == '"':
			end, _, ok = scanString(b, i)
		case '1' <= c && c <= '9':
			end, ok = skipDigits(b, i+1), true
			if end < len(b) && (b[end] == '.' || b[end]|0x20 == 'e') {
				end, ok = scanNumber(b, i)
			}
		default:
			end, _, ok = scanValue(b, i, depth+1)
		}
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
