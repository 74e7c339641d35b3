package logline

import (
	"bytes"
	"strconv"
	"unicode/utf8"
)

// pairs scans b as space-separated key=value pairs, as slog's TextHandler,
// logrus's text formatter and go-ethereum's terminal attributes write
// them: a value is bare up to the next space, or a Go-quoted string (with
// lenient, also a string quoted as hclog quotes it; see hclogQuoted). fn
// gets each key and value (unquoted into scratch when quoted). It reports
// false when some token is not a pair.
func (p *Parser) pairs(b []byte, lenient bool, fn func(key, val []byte, quoted bool)) bool {
	i := 0
	for {
		for i < len(b) && b[i] == ' ' {
			i++
		}
		if i >= len(b) {
			return true
		}
		k := i
		var key []byte
		if b[i] == '"' { // a quoted key (go-ethereum quotes keys with spaces)
			_, n, ok := goQuoted(b[i:], &p.scratch)
			if !ok {
				return false
			}
			key = b[i+1 : i+n-1]
			i += n
			if i >= len(b) || b[i] != '=' {
				return false
			}
		} else {
			for i < len(b) && b[i] != '=' && b[i] != ' ' && b[i] != '"' {
				i++
			}
			if i == k || i >= len(b) || b[i] != '=' {
				return false
			}
			key = b[k:i]
		}
		i++ // '='
		if i < len(b) && b[i] == '"' {
			v, n, ok := goQuoted(b[i:], &p.scratch)
			if lenient && (!ok || n < len(b)-i && b[i+n] != ' ') {
				v, n, ok = hclogQuoted(b[i:], &p.scratch)
			}
			if !ok {
				return false
			}
			fn(key, v, true)
			i += n
			if i < len(b) && b[i] != ' ' {
				return false
			}
			continue
		}
		v, j := word(b, i)
		fn(key, v, false)
		i = j
	}
}

// fieldsBuilder collects pairs into a JSON object of strings.
type fieldsBuilder struct{ buf []byte }

func (f *fieldsBuilder) reset(dst []byte) { f.buf = append(dst[:0], '{') }

func (f *fieldsBuilder) add(key, val []byte) {
	if len(f.buf) > 1 {
		f.buf = append(f.buf, ',')
	}
	f.buf = appendJSONString(f.buf, key)
	f.buf = append(f.buf, ':')
	f.buf = appendJSONString(f.buf, val)
}

// goQuoted reads the Go string literal ("...") at the start of b, as
// strconv.QuotedPrefix and strconv.Unquote would: it returns the literal's
// value and length. The value is b's own bytes when the literal has no
// escapes, else unquoted into *buf. ok is false when b starts with no
// valid literal.
func goQuoted(b []byte, buf *[]byte) (val []byte, n int, ok bool) {
	if len(b) < 2 || b[0] != '"' {
		return nil, 0, false
	}
	if j := bytes.IndexByte(b[1:], '"'); j >= 0 {
		body := b[1 : j+1]
		if bytes.IndexByte(body, '\\') < 0 && bytes.IndexByte(body, '\n') < 0 && utf8.Valid(body) {
			return body, j + 2, true
		}
	}
	q, err := strconv.QuotedPrefix(string(b))
	if err != nil {
		return nil, 0, false
	}
	u, err := strconv.Unquote(q)
	if err != nil {
		return nil, 0, false
	}
	*buf = append((*buf)[:0], u...)
	return *buf, len(q), true
}

// done returns the object, or nil when it is empty.
func (f *fieldsBuilder) done() []byte {
	if len(f.buf) <= 1 {
		return nil
	}
	f.buf = append(f.buf, '}')
	return f.buf
}

// appendJSONString appends s as a JSON string; s is valid UTF-8 (cleaned
// text) except after an unquote, where invalid bytes become U+FFFD.
func appendJSONString(dst, s []byte) []byte {
	const hex = "0123456789abcdef"
	dst = append(dst, '"')
	if jsonSafe(s) {
		return append(append(dst, s...), '"')
	}
	for i := 0; i < len(s); {
		c := s[i]
		switch {
		case c == '"' || c == '\\':
			dst = append(dst, '\\', c)
		case c < 0x20:
			dst = append(dst, '\\', 'u', '0', '0', hex[c>>4], hex[c&0xf])
		case c < utf8.RuneSelf:
			dst = append(dst, c)
		default:
			r, n := utf8.DecodeRune(s[i:])
			dst = utf8.AppendRune(dst, r)
			i += n
			continue
		}
		i++
	}
	return append(dst, '"')
}

// parseLogfmt parses a line of key=value pairs. It needs a level or a
// message key (level, lvl, msg, message); time, ts, logger and caller or
// source have fields of their own, the rest go to Fields.
func (p *Parser) parseLogfmt(b []byte, l *Line) bool {
	var (
		fb               fieldsBuilder
		haveLvl, haveMsg bool
	)
	fb.reset(p.fields)
	ok := p.pairs(b, false, func(key, val []byte, quoted bool) {
		switch string(key) {
		case "level", "lvl":
			if !haveLvl {
				haveLvl = true
				p.level = append(p.level[:0], val...)
				return
			}
		case "msg", "message":
			if !haveMsg {
				haveMsg = true
				p.msg = append(p.msg[:0], val...)
				return
			}
		case "time", "ts":
			if l.PluginTime.IsZero() {
				if t, ok := parseTimestamp(val); ok {
					l.PluginTime = t
					return
				}
			}
		case "logger":
			if l.Logger == nil {
				p.logger = append(p.logger[:0], val...)
				l.Logger = p.logger
				return
			}
		case "caller", "source":
			if l.Caller == nil {
				p.caller = append(p.caller[:0], val...)
				l.Caller = p.caller
				return
			}
		}
		fb.add(key, val)
	})
	p.fields = fb.buf
	if !ok || !haveLvl && !haveMsg {
		return false
	}
	if haveLvl {
		l.setLevel(p.level)
	}
	if haveMsg {
		l.Message = p.msg
	} else {
		l.Message = nil
	}
	l.Fields = fb.done()
	p.fields = fb.buf
	l.Format = Logfmt
	return true
}

// parseGeth parses go-ethereum's terminal format (libevm's log/format.go):
// the level padded to five characters ("INFO ", "ERROR"), the time
// "[01-02|15:04:05.000]", the message (Go-quoted when it holds '=' or
// control characters) padded to 40 characters when attributes follow, then
// key=value attributes.
func (p *Parser) parseGeth(b []byte, l *Line) bool {
	open := bytes.IndexByte(b, '[')
	if open < 4 || open > 6 || len(b) < open+20 || b[open+19] != ']' {
		return false
	}
	lvl := bytes.TrimRight(b[:open], " ")
	for _, c := range lvl {
		if c < 'A' || c > 'Z' {
			return false
		}
	}
	t, ok := p.termTime(b, open+1, l.Time)
	if !ok {
		return false
	}
	rest := b[open+20:]
	if len(rest) > 0 {
		if rest[0] != ' ' {
			return false
		}
		rest = rest[1:]
	}
	var msg, attrs []byte
	if len(rest) > 0 && rest[0] == '"' {
		v, n, ok := goQuoted(rest, &p.msg)
		if !ok {
			return false
		}
		msg, attrs = v, rest[n:]
	} else if eq := bytes.IndexByte(rest, '='); eq >= 0 {
		k := bytes.LastIndexByte(rest[:eq], ' ') + 1
		msg, attrs = bytes.TrimRight(rest[:k], " "), rest[k:]
	} else {
		msg = bytes.TrimRight(rest, " ")
	}
	var fb fieldsBuilder
	fb.reset(p.fields)
	if !p.pairs(attrs, false, func(key, val []byte, _ bool) { fb.add(key, val) }) {
		p.fields = fb.buf
		return false
	}
	l.Fields = fb.done()
	p.fields = fb.buf
	l.PluginTime = t
	l.setLevel(lvl)
	l.Message = msg
	l.Format = Geth
	return true
}

// parseKlog parses klog's and glog's header, "Lmmdd hh:mm:ss.uuuuuu
// threadid file:line] message", L one of I, W, E, F. A message in klog's
// structured form (`"quoted message" key="value"`) has its pairs as
// fields.
func (p *Parser) parseKlog(b []byte, l *Line) bool {
	if len(b) < 22 || b[5] != ' ' || b[8] != ':' || b[11] != ':' || b[14] != '.' || b[21] != ' ' {
		return false
	}
	mo, ok1 := digits(b, 1, 2)
	d, ok2 := digits(b, 3, 2)
	h, ok3 := digits(b, 6, 2)
	mi, ok4 := digits(b, 9, 2)
	s, ok5 := digits(b, 12, 2)
	us, ok6 := digits(b, 15, 6)
	if !(ok1 && ok2 && ok3 && ok4 && ok5 && ok6) {
		return false
	}
	t, ok := p.complete(l.Time, mo, d, h, mi, s, us*1e3)
	if !ok {
		return false
	}
	i := 22
	for i < len(b) && b[i] == ' ' {
		i++
	}
	tid := i
	for i < len(b) && isDigit(b[i]) {
		i++
	}
	if i == tid || i >= len(b) || b[i] != ' ' {
		return false
	}
	br := bytes.Index(b[i:], []byte("] "))
	if br < 0 {
		if !bytes.HasSuffix(b, []byte("]")) {
			return false
		}
		br = len(b) - 1 - i
	}
	caller := b[i+1 : i+br]
	if !isCaller(caller) {
		return false
	}
	msg := b[min(i+br+2, len(b)):]
	switch b[0] {
	case 'I':
		l.Level = zerologInfo
	case 'W':
		l.Level = zerologWarn
	case 'E':
		l.Level = zerologError
	case 'F':
		l.Level = zerologFatal
	default:
		return false
	}
	if len(msg) > 0 && msg[0] == '"' {
		if u, n, ok := goQuoted(msg, &p.scratch2); ok {
			var fb fieldsBuilder
			fb.reset(p.fields)
			if p.pairs(msg[n:], false, func(key, val []byte, _ bool) { fb.add(key, val) }) {
				p.msg = append(p.msg[:0], u...)
				msg = p.msg
				l.Fields = fb.done()
			}
			p.fields = fb.buf
		}
	}
	l.PluginTime = t
	l.Caller = caller
	l.Message = msg
	l.Format = Klog
	return true
}
