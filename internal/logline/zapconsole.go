package logline

import "bytes"

// parseZapConsole parses zap's console encoder as avalanchego's
// utils/logging configures it: time "[01-02|15:04:05.000]", level
// (colour codes already removed), logger name (avalanchego wraps it as
// "<C Chain>"), short caller, message and the fields as a JSON object, the
// elements separated by one space (zap's default separator is a tab, which
// is accepted too).
func (p *Parser) parseZapConsole(b []byte, l *Line) bool {
	if len(b) < 22 || b[0] != '[' || b[19] != ']' || (b[20] != ' ' && b[20] != '\t') {
		return false
	}
	t, ok := p.termTime(b, 1, l.Time)
	if !ok {
		return false
	}
	sep := b[20]
	i := 21
	end := func(i int) int { // the end of the element at b[i:]
		j := bytes.IndexByte(b[i:], sep)
		if j < 0 {
			return len(b)
		}
		return i + j
	}
	j := end(i)
	lvl := b[i:j]
	if len(lvl) == 0 {
		return false
	}
	l.PluginTime = t
	l.setLevel(lvl)
	i = min(j+1, len(b))
	if i < len(b) && b[i] == '<' {
		if k := closeAngle(b[i:], sep); k > 0 {
			l.Logger = b[i+1 : i+k]
			i += k + 2
		} else if b[len(b)-1] == '>' {
			l.Logger, i = b[i+1:len(b)-1], len(b)
		}
	}
	if i < len(b) {
		if j := end(i); isCaller(b[i:j]) {
			l.Caller = b[i:j]
			i = min(j+1, len(b))
		}
	}
	msg := b[i:]
	if k := zapFields(msg, sep); k >= 0 {
		l.Fields = msg[k:]
		msg = msg[:max(k-1, 0)]
	}
	l.Message = msg
	l.Format = ZapConsole
	return true
}

// closeAngle returns the index in b of the first '>' followed by sep, or
// -1.
func closeAngle(b []byte, sep byte) int {
	for k := 0; ; {
		j := bytes.IndexByte(b[k:], '>')
		if j < 0 {
			return -1
		}
		k += j
		if k+1 < len(b) && b[k+1] == sep {
			return k
		}
		k++
	}
}

// zapFields returns where the fields of a zap console message start, or
// -1: zap writes them last, as a JSON object after a separator, so they
// are the last "{" at the start of msg or after sep that starts an object
// running to msg's end. Searching from the end touches the fields' bytes
// only, not the message's.
func zapFields(msg []byte, sep byte) int {
	n := len(msg)
	if n == 0 || msg[n-1] != '}' {
		return -1
	}
	for k := n - 1; k >= 0; k-- {
		k = bytes.LastIndexByte(msg[:k+1], '{')
		if k < 0 {
			return -1
		}
		if k > 0 && msg[k-1] != sep {
			continue
		}
		if e, ok := scanContainer(msg, k, 1, '}', true); ok && e == n {
			return k
		}
	}
	return -1
}
