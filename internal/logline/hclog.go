package logline

import (
	"bytes"
	"time"
)

// parseHclog parses hclog's text format (its intLogger.logPlain), as
// go-plugin hosts and HashiCorp tools print it:
//
//	2026-12-06T21:46:25.946Z [ERROR] plugin.name: message: key=value key2="a b"
//
// the time (layout "2006-01-02T15:04:05.000Z0700" by default; left out
// with DisableTime), the level in brackets padded to seven characters, an
// optional caller "file.go:12:", the logger name and message joined by
// ": ", and, after a ':', key=value pairs. Values with spaces or unprintable
// characters are quoted, with quotes but not backslashes escaped. The
// format is ambiguous where a message itself holds ": key=value": the first
// ": " followed by nothing but pairs starts the fields, and a lone word
// before ": " followed by nothing but pairs is the message, not the name.
// Values holding newlines continue on the next lines (hclogMore).
func (p *Parser) parseHclog(b []byte, l *Line) bool {
	i := 0
	var t time.Time
	if len(b) > 0 && b[0] != '[' {
		sp := bytes.IndexByte(b, ' ')
		if sp < 0 {
			return false
		}
		var ok bool
		if t, ok = parseTimestamp(b[:sp]); !ok {
			return false
		}
		i = sp + 1
	}
	// "[LEVEL]" and its padding: seven characters and a space.
	if len(b) < i+8 || b[i] != '[' {
		return false
	}
	end := bytes.IndexByte(b[i:min(i+8, len(b))], ']')
	if end < 2 {
		return false
	}
	lvl := b[i+1 : i+end]
	for _, c := range lvl {
		if (c < 'A' || c > 'Z') && c != '?' {
			return false
		}
	}
	i += end + 1
	for n := end + 1; n < 7 && i < len(b) && b[i] == ' '; n++ {
		i++ // the padding of "[INFO] " and "[WARN] "
	}
	if i < len(b) && b[i] == ' ' {
		// " file.go:12:" when the logger includes the location.
		if w, j := word(b, i+1); len(w) > 1 && w[len(w)-1] == ':' && isCaller(w[:len(w)-1]) {
			l.Caller = w[:len(w)-1]
			i = j
		}
	}
	if i < len(b) {
		if b[i] != ' ' {
			l.Caller = nil
			return false
		}
		i++
	}
	rest := b[i:]
	var fb fieldsBuilder
	fb.reset(p.fields)
	add := func(key, val []byte, _ bool) { fb.add(key, val) }
	// The logger name: a first word without spaces ending in ": ".
	if w, _ := word(rest, 0); len(w) > 1 && w[len(w)-1] == ':' && len(w) < len(rest) {
		if after := rest[len(w)+1:]; !p.hclogFields(after, &fb, add) {
			l.Logger, rest = w[:len(w)-1], after
			fb.reset(fb.buf)
		}
	}
	msg := rest
	// The fields: after the first ": " that only pairs follow.
	for k := 0; k < len(rest); {
		c := bytes.Index(rest[k:], []byte(": "))
		if c < 0 {
			break
		}
		k += c
		fb.reset(fb.buf)
		if p.hclogFields(rest[k+2:], &fb, add) {
			msg = rest[:k]
			break
		}
		fb.reset(fb.buf)
		k += 2
	}
	if len(msg) == len(rest) && len(rest) > 0 && rest[len(rest)-1] == ':' {
		msg = rest[:len(rest)-1] // hclog's ':' before pairs that all were empty
	}
	l.Fields = fb.done()
	p.fields = fb.buf
	l.PluginTime = t
	l.setLevel(lvl)
	l.Message = msg
	l.Format = Hclog
	return true
}

// hclogFields reports whether b is one or more key=value pairs, adding
// them to fb (which the caller resets when it is not).
func (p *Parser) hclogFields(b []byte, fb *fieldsBuilder, add func(key, val []byte, quoted bool)) bool {
	if len(b) == 0 || b[0] == ' ' || bytes.IndexByte(b, '=') < 0 {
		return false
	}
	return p.pairs(b, true, add)
}

// hclogQuoted reads a value as hclog quotes it: between quotes, with
// quotes and unprintable characters escaped but backslashes not, so
// `"C:\data dir"` is the value C:\data dir. The value ends at the first
// quote that no backslash precedes and a space or the line's end follows;
// `\"` in it becomes `"`, other escapes stay as written.
func hclogQuoted(b []byte, buf *[]byte) (val []byte, n int, ok bool) {
	for i := 1; i < len(b); i++ {
		if b[i] != '"' || b[i-1] == '\\' || i+1 < len(b) && b[i+1] != ' ' {
			continue
		}
		v := (*buf)[:0]
		body := b[1:i]
		for {
			j := bytes.Index(body, []byte(`\"`))
			if j < 0 {
				break
			}
			v = append(append(v, body[:j]...), '"')
			body = body[j+2:]
		}
		v = append(v, body...)
		*buf = v
		return v, i + 1, true
	}
	return nil, 0, false
}

// hclogMore reads the lines that continue the hclog line l was parsed
// from, when its values hold newlines. hclog writes each such value as a
// block: a line "  key=", a line "  | " and the text for each line of the
// value, and a line "  " that the record's next plain pairs (" k=v")
// continue, or that ends it. rest is what follows l's line end; only whole
// blocks, their last line ended, are read. The values become fields of l,
// their lines joined with "\n", and hclogMore returns how many bytes of
// rest it read (0: none, l unchanged).
func (p *Parser) hclogMore(rest []byte, l *Line) int {
	if l.Format != Hclog || !bytes.HasPrefix(rest, []byte("  ")) {
		return 0
	}
	var fb fieldsBuilder
	if l.Fields != nil {
		fb.buf = l.Fields[:len(l.Fields)-1]
	} else {
		fb.reset(p.fields)
	}
	kept := len(fb.buf) // fb.buf[:kept] is what the blocks read so far made
	done, i := 0, 0
	inValue, lines := false, 0
	for {
		j := bytes.IndexByte(rest[i:], '\n')
		if j < 0 {
			break
		}
		line := bytes.TrimSuffix(rest[i:i+j], []byte("\r"))
		if !printable(line) {
			// Not p.clean: l's text may be in it.
			p.more, _ = appendCleanRuns(p.more[:0], line)
			line = p.more
		}
		if !inValue {
			k, ok := bytes.CutPrefix(line, []byte("  "))
			if !ok || len(k) < 2 || k[len(k)-1] != '=' || bytes.ContainsAny(k[:len(k)-1], " =\"") {
				break
			}
			p.key = append(p.key[:0], k[:len(k)-1]...)
			p.value = p.value[:0]
			inValue, lines = true, 0
			i += j + 1
			continue
		}
		if v, ok := bytes.CutPrefix(line, []byte("  | ")); ok || string(line) == "  |" {
			if lines > 0 {
				p.value = append(p.value, '\n')
			}
			p.value = append(p.value, v...)
			lines++
			i += j + 1
			continue
		}
		after, ok := bytes.CutPrefix(line, []byte("  "))
		if !ok || lines == 0 || len(after) > 0 && after[0] != ' ' {
			break
		}
		fb.buf = fb.buf[:kept]
		fb.add(p.key, p.value)
		if len(after) > 0 && !p.hclogFields(after[1:], &fb, func(k, v []byte, _ bool) { fb.add(k, v) }) {
			break
		}
		kept = len(fb.buf)
		inValue = false
		i += j + 1
		done = i
	}
	if done == 0 {
		if l.Fields != nil {
			// fb wrote its first comma over l.Fields' closing brace and may
			// have moved to a larger array since: put the brace back where
			// l.Fields has it.
			l.Fields[len(l.Fields)-1] = '}'
		}
		return 0
	}
	fb.buf = fb.buf[:kept]
	l.Fields = fb.done()
	p.fields = fb.buf
	return done
}
