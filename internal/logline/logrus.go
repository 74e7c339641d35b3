package logline

import (
	"bytes"
	"time"
)

// parseLogrus parses the form logrus's TextFormatter takes on a terminal
// (or with ForceColors), colour codes already removed:
//
//	WARN[0000] disk almost full                              free_bytes=1048576 path="/data dir"
//	WARN disk almost full                              free_bytes=1048576 path="/data dir"
//
// the level upper-cased and cut to four letters (whole with
// DisableLevelTruncation, padded with PadLevelText), in brackets the
// seconds since the program started or, with FullTimestamp, the time (no
// brackets with DisableTimestamp), then the caller when reported
// ("file.go:12 pkg.fn()"), a space, the message padded to 44 characters, a
// space, and " key=value" per field, values Go-quoted when they need it.
// The fields are what follows the first run of two or more spaces after
// which only pairs come. Without brackets only the trailing space of the
// padding or the fields tell the line from text that starts with a level
// word, so the line must have one of them. Without a terminal logrus
// writes logfmt (time="..." level=warning msg="..."), which parseLogfmt
// reads.
func (p *Parser) parseLogrus(b []byte, l *Line) bool {
	upper := 0
	for upper < len(b) && 'A' <= b[upper] && b[upper] <= 'Z' {
		upper++
	}
	lv, ok := levelWord(b[:upper])
	if !ok || upper < 4 {
		return false
	}
	i := upper
	for i < len(b) && b[i] == ' ' {
		i++ // PadLevelText
	}
	stamped := i < len(b) && b[i] == '['
	var t time.Time
	if stamped {
		closing := bytes.IndexByte(b[i:], ']')
		if closing < 2 {
			return false
		}
		stamp := b[i+1 : i+closing]
		if _, isNum := digits(stamp, 0, len(stamp)); !isNum {
			if t, ok = parseTimestamp(stamp); !ok {
				return false
			}
		}
		i += closing + 1
	} else if i > upper {
		i-- // the space before the message
	}
	var caller []byte
	if i < len(b) && b[i] != ' ' {
		w, j := word(b, i)
		if !isCaller(w) {
			return false
		}
		if f, k := word(b, min(j+1, len(b))); bytes.HasSuffix(f, []byte("()")) {
			j = k
		}
		caller, i = b[i:j], j
	}
	if i < len(b) {
		if b[i] != ' ' {
			return false
		}
		i++
	}
	rest := b[i:]
	var fb fieldsBuilder
	fb.reset(p.fields)
	msg := rest
	for k := 0; k < len(rest); {
		c := bytes.Index(rest[k:], []byte("  "))
		if c < 0 {
			break
		}
		k += c
		e := k
		for e < len(rest) && rest[e] == ' ' {
			e++
		}
		// A message shorter than the padding has spaces up to column 44
		// whether fields follow or not.
		if p.pairs(rest[e:], false, func(key, val []byte, _ bool) { fb.add(key, val) }) {
			msg = rest[:k]
			break
		}
		fb.reset(fb.buf)
		k = e
	}
	if len(msg) == len(rest) {
		if !stamped && (len(rest) == 0 || rest[len(rest)-1] != ' ') {
			return false
		}
		msg = bytes.TrimRight(msg, " ") // the space after the padded message
	}
	l.Fields = fb.done()
	p.fields = fb.buf
	l.Level = lv
	l.PluginTime = t
	l.Caller = caller
	l.Message = msg
	l.Format = Logrus
	return true
}
