package logline

import (
	"bytes"
	"encoding/binary"
	"encoding/json"
	"time"

	"github.com/rs/zerolog"
)

// Parser parses lines of one stream. It keeps scratch buffers between
// lines, so a Parser is not safe for concurrent use, and the slices of a
// parsed [Line] are valid only until the next Parse.
type Parser struct {
	format Format
	loc    *time.Location

	// clean holds the cleaned text of a line of up to tailOwnCap bytes,
	// in a buffer of at most tailOwnCap that the reader may trade with
	// the tail's (Tail.addOwned); cleanLong that of a longer line.
	clean, cleanLong                                      []byte
	msg, level, logger, caller, fields, scratch, scratch2 []byte
	more, key, value                                      []byte // hclogMore's
	members                                               []member
	minute                                                minuteCache
	second                                                secondCache
}

// NewParser returns a Parser for lines in format f ([Auto]: recognise each
// line's format). Times without a zone are read in loc (nil: time.Local).
func NewParser(f Format, loc *time.Location) *Parser {
	if loc == nil {
		loc = time.Local
	}
	return &Parser{format: f, loc: loc}
}

// Parse parses the line b (without its line end) into l. It sets every
// field of l but Seq, Pid, Stream, Time, Dump, Partial and Panic; l.Time,
// the time the line was read, completes the year of timestamps that lack
// one. A line in no known format (or not in the Parser's fixed format) is
// [Plain]: its text is the message, at info, or at the level a leading
// level word and colon name ("ERROR: ..."), unless the Parser's format is
// Plain.
func (p *Parser) Parse(b []byte, l *Line) {
	l.Text, l.printable, l.safeTo = p.cleanText(b)
	text := l.Text
	l.PluginTime, l.LevelText, l.Fields, l.Logger, l.Caller = time.Time{}, nil, nil, nil, nil
	l.Level, l.Message, l.Format = zerolog.InfoLevel, text, Plain
	if p.format == Raw {
		l.Format = Raw
		return
	}
	f := p.format
	if f == Auto {
		f = sniff(text)
	}
	var ok bool
	switch f {
	case JSON:
		ok = p.parseJSON(text, l)
	case ZapConsole:
		// hclog without its time starts with the level's '[' too.
		ok = p.parseZapConsole(text, l) || p.format == Auto && p.parseHclog(text, l)
	case Geth:
		// logrus's terminal form puts its '[' where geth does, or near.
		ok = p.parseGeth(text, l) || p.format == Auto && p.parseLogrus(text, l)
	case Hclog:
		ok = p.parseHclog(text, l)
	case Logrus:
		ok = p.parseLogrus(text, l)
	case Logfmt:
		ok = p.parseLogfmt(text, l)
	case Klog:
		ok = p.parseKlog(text, l)
	}
	if !ok {
		l.PluginTime, l.LevelText, l.Fields, l.Logger, l.Caller = time.Time{}, nil, nil, nil, nil
		l.Level, l.Message, l.Format = zerolog.InfoLevel, text, Plain
		if p.format != Plain {
			l.Level = plainLevel(text)
		}
		return
	}
	if l.Fields != nil && hasEscapedESC(l.Fields) {
		l.Fields = cleanFields(l.Fields)
	}
}

// plainLevel is the level of a line of plain text: the one a leading level
// word names when a colon and a space (or the line's end) follow it, as in
// "ERROR: bad genesis", "fatal: cannot open database", "Warning: low disk"
// or cobra's "Error: unknown flag"; else info. "panic: " is not taken: a Go
// panic is grouped with its goroutine dump as one error.
func plainLevel(text []byte) zerolog.Level {
	// A level word has at most 16 bytes (levelWord).
	i := bytes.IndexByte(text[:min(len(text), 17)], ':')
	if i <= 0 || i+1 < len(text) && text[i+1] != ' ' {
		return zerolog.InfoLevel
	}
	for _, c := range text[:i] {
		if c |= 0x20; c < 'a' || c > 'z' {
			return zerolog.InfoLevel
		}
	}
	if lv, ok := levelWord(text[:i]); ok && lv != zerolog.PanicLevel {
		return lv
	}
	return zerolog.InfoLevel
}

// hasEscapedESC reports whether the JSON text f holds \u001b or \u001B.
func hasEscapedESC(f []byte) bool {
	for {
		// Most fields hold no backslash at all: IndexByte finds that
		// sooner than a search for the whole escape would.
		i := bytes.IndexByte(f, '\\')
		if i < 0 || i+5 >= len(f) {
			return false
		}
		if string(f[i:i+5]) == `\u001` && (f[i+5] == 'b' || f[i+5] == 'B') {
			return true
		}
		f = f[i+1:]
	}
}

// cleanFields removes the ANSI escape sequences that JSON escapes
// (\u001b) would bring back into the fields' keys and strings. The
// object is decoded and encoded again, so its keys come out sorted.
func cleanFields(f []byte) []byte {
	d := json.NewDecoder(bytes.NewReader(f))
	d.UseNumber()
	var v any
	if err := d.Decode(&v); err != nil {
		return f
	}
	var out bytes.Buffer
	e := json.NewEncoder(&out)
	e.SetEscapeHTML(false)
	if err := e.Encode(cleanValue(v)); err != nil {
		return f
	}
	return bytes.TrimSuffix(out.Bytes(), []byte("\n"))
}

func cleanValue(v any) any {
	switch v := v.(type) {
	case string:
		return string(appendClean(nil, []byte(v)))
	case []any:
		for i := range v {
			v[i] = cleanValue(v[i])
		}
	case map[string]any:
		out := make(map[string]any, len(v))
		for k, e := range v {
			out[string(appendClean(nil, []byte(k)))] = cleanValue(e)
		}
		return out
	}
	return v
}

// sniff guesses a line's format from its first bytes; the format's parser
// has the last word.
func sniff(b []byte) Format {
	if len(b) == 0 {
		return Plain
	}
	switch c := b[0]; {
	case c == '{' || c == ' ' && bytes.HasPrefix(bytes.TrimLeft(b, " \t"), []byte("{")):
		return JSON
	case c == '[':
		return ZapConsole
	case (c == 'I' || c == 'W' || c == 'E' || c == 'F') && len(b) > 5 && isDigit(b[1]) && b[5] == ' ':
		return Klog
	case 'A' <= c && c <= 'Z' && len(b) > 8 && bytes.IndexByte(b[4:8], '[') >= 0:
		return Geth
	case 'A' <= c && c <= 'Z':
		return Logrus // without its time
	case isDigit(c) && len(b) > 24 && b[4] == '-' && b[10] == 'T':
		return Hclog
	case 'a' <= c && c <= 'z':
		return Logfmt
	}
	return Plain
}

func isDigit(c byte) bool { return '0' <= c && c <= '9' }

// digits returns the number in b[i:i+n] if those are n digits.
func digits(b []byte, i, n int) (int, bool) {
	if i+n > len(b) {
		return 0, false
	}
	v := 0
	for _, c := range b[i : i+n] {
		if !isDigit(c) {
			return 0, false
		}
		v = v*10 + int(c-'0')
	}
	return v, true
}

// termTime parses "MM-DD|HH:MM:SS.mmm" (zap console as avalanchego sets
// it, go-ethereum's terminal format) at b[i:], a time without year or zone.
func (p *Parser) termTime(b []byte, i int, now time.Time) (time.Time, bool) {
	// The lines of a burst often share their millisecond: the last
	// text's time is reused while the read time is the same too.
	c := &p.second
	if c.valid && i+18 <= len(b) && equal18(b[i:i+18], &c.text) && now.Equal(c.now) {
		return c.last, true
	}
	if i+18 > len(b) || b[i+2] != '-' || b[i+5] != '|' || b[i+8] != ':' || b[i+11] != ':' || b[i+14] != '.' {
		return time.Time{}, false
	}
	ms, ok := digits(b, i+15, 3)
	if !ok {
		return time.Time{}, false
	}
	// The lines of one second share "MM-DD|HH:MM:SS": its completed
	// start is reused while the read time is the same too.
	if c.valid && string(b[i:i+14]) == string(c.text[:14]) && now.Equal(c.now) {
		c.last = c.start.Add(time.Duration(ms) * time.Millisecond)
		copy(c.text[15:], b[i+15:i+18])
		return c.last, true
	}
	mo, ok1 := digits(b, i, 2)
	d, ok2 := digits(b, i+3, 2)
	h, ok3 := digits(b, i+6, 2)
	mi, ok4 := digits(b, i+9, 2)
	s, ok5 := digits(b, i+12, 2)
	if !(ok1 && ok2 && ok3 && ok4 && ok5) {
		return time.Time{}, false
	}
	start, ok := p.complete(now, mo, d, h, mi, s, 0)
	if !ok {
		return time.Time{}, false
	}
	// Reusable only where adding the milliseconds cannot change what
	// complete decides: not a leap second, not near the year's turn.
	c.valid = s < 60 && !now.IsZero() && start.Sub(now) <= 24*time.Hour-time.Second && start.Sub(now) > -300*24*time.Hour
	t, ok := p.complete(now, mo, d, h, mi, s, ms*1e6)
	if c.valid {
		copy(c.text[:], b[i:i+18])
		c.now, c.start, c.last = now, start, t
	}
	return t, ok
}

// equal18 reports whether a, of 18 bytes, equals t: three loads a side,
// where a string comparison calls memequal.
func equal18(a []byte, t *[18]byte) bool {
	_ = a[17]
	return binary.LittleEndian.Uint64(a) == binary.LittleEndian.Uint64(t[:]) &&
		binary.LittleEndian.Uint64(a[8:]) == binary.LittleEndian.Uint64(t[8:]) &&
		binary.LittleEndian.Uint16(a[16:]) == binary.LittleEndian.Uint16(t[16:])
}

// secondCache holds the last "MM-DD|HH:MM:SS.mmm" completed, the read
// time it was completed for, the start of its second and the time itself.
type secondCache struct {
	valid            bool
	text             [18]byte
	now, start, last time.Time
}

// complete builds a time the plugin wrote without year or zone: in the
// engine's zone, in the year that puts it nearest before now (a line of
// December 31 read on January 1 is from last year).
func (p *Parser) complete(now time.Time, mo, d, h, mi, s, ns int) (time.Time, bool) {
	if mo < 1 || mo > 12 || d < 1 || d > 31 || h > 23 || mi > 59 || s > 60 {
		return time.Time{}, false
	}
	if now.IsZero() {
		now = time.Now()
	}
	m := &p.minute
	if sec := now.Unix(); sec != m.nowSec || m.year == 0 {
		m.nowSec, m.year = sec, now.In(p.loc).Year()
	}
	// The lines of one minute share its start: time.Date, the bulk of
	// the cost, runs once a minute (no zone changes its offset inside a
	// minute).
	if key := [4]int{mo, d, h, mi}; key != m.key || m.year != m.startYear {
		m.key, m.startYear = key, m.year
		m.start = time.Date(m.year, time.Month(mo), d, h, mi, 0, 0, p.loc)
	}
	t := m.start.Add(time.Duration(s)*time.Second + time.Duration(ns))
	if s == 60 { // a leap second is the next minute's first, maybe in another offset
		t = time.Date(m.year, time.Month(mo), d, h, mi, s, ns, p.loc)
	}
	if t.Sub(now) > 24*time.Hour {
		t = time.Date(m.year, time.Month(mo), d, h, mi, s, ns, p.loc).AddDate(-1, 0, 0)
	}
	return t, true
}

// minuteCache holds the start of the minute the last completed time fell
// in, and the year of the last read time.
type minuteCache struct {
	nowSec          int64
	year, startYear int
	key             [4]int
	start           time.Time
}

// word returns the bytes of b from i up to the next space (or the end) and
// the index of that space.
func word(b []byte, i int) ([]byte, int) {
	j := bytes.IndexByte(b[i:], ' ')
	if j < 0 {
		return b[i:], len(b)
	}
	return b[i : i+j], i + j
}

// isCaller reports whether w looks like a source position: "file.go:123",
// "pkg/file.go:123".
func isCaller(w []byte) bool {
	// Read from the end: the line number, the ':', then a '.' before it,
	// most often a few bytes back ("x.go:12").
	i := len(w)
	for i > 0 && isDigit(w[i-1]) {
		i--
	}
	if i == len(w) || i < 2 || w[i-1] != ':' {
		return false
	}
	for j := i - 2; j >= 0; j-- {
		if w[j] == '.' {
			return true
		}
	}
	return false
}

// ParseText fills l with b as plain text, parsing no format: the cleaned
// text is the message, at info.
func (p *Parser) ParseText(b []byte, l *Line) {
	text, ok, safeTo := p.cleanText(b)
	l.printable, l.safeTo = ok, safeTo
	l.Text, l.Message, l.Level, l.Format = text, text, zerolog.InfoLevel, Plain
	l.PluginTime, l.LevelText, l.Fields, l.Logger, l.Caller = time.Time{}, nil, nil, nil, nil
}

// cleanText returns b without ANSI escape sequences and invalid UTF-8 (b
// itself when it has neither), whether that is all printable ASCII, and
// how long its start is that needs no JSON escaping.
func (p *Parser) cleanText(b []byte) (text []byte, all bool, safeTo int) {
	var k int
	if len(b) > 1 && b[1] == '"' && b[0] >= 0x20 && b[0] <= 0x7e && b[0] != '"' && b[0] != '\\' {
		k = 1 // a JSON object's first key, where the scan would stop
	} else {
		k = specialIndex(b)
	}
	if k < 0 {
		return b, true, len(b)
	}
	if c := b[k]; (c == '"' || c == '\\') && printable(b[k+1:]) {
		return b, true, k
	}
	if len(b) > tailOwnCap {
		p.cleanLong, all, safeTo = appendCleanTextAt(p.cleanLong[:0], b, k)
		return p.cleanLong, all, safeTo
	}
	if cap(p.clean) < len(b) {
		// Sized here rather than grown by append, which could take it
		// past tailOwnCap; only a text longer than b (invalid UTF-8
		// replaced) still grows it.
		p.clean = make([]byte, 0, min(2*len(b), tailOwnCap))
	}
	p.clean, all, safeTo = appendCleanTextAt(p.clean[:0], b, k)
	return p.clean, all, safeTo
}
