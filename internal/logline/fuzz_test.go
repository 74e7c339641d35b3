package logline

import (
	"bytes"
	"encoding/json"
	"fmt"
	"strconv"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/rs/zerolog"
)

var fuzzSeeds = []string{
	"[12-06|21:46:25.946] \x1b[0;33mERROR\x1b[0;0m <X Chain> vm/vm.go:252 failed {\"error\": \"x\"}",
	"WARN [12-06|21:46:27.100] Snapshot failed                peer=5a1c0e err=\"read: timeout\"",
	`time=2026-12-06T21:46:29.123Z level=WARN msg="disk almost full" free=1`,
	`{"level":"warn","time":"2026-12-06T21:46:30Z","message":"slow","ms":250}`,
	`{"@level":"debug","@message":"m","@timestamp":"2026-12-06T21:46:31.000001Z","a":[1,{"b":null}]}`,
	`{"level":50,"ts":1796589990.5,"msg":"a\u00e9\ud83d\ude00\"","lvl":"x"}`,
	"E1206 21:46:25.946123    1234 server.go:12] \"quoted\" k=v",
	`2026-12-06T21:46:25.946+0100 [ERROR] plugin.x: failed: error="a b" path="C:\d x" n=1`,
	"2026-12-06T21:46:25.946Z [INFO]  x/y.go:19: serving: k=\"\"",
	"[WARN]  vm: no time: a=1",
	"\x1b[33mWARN\x1b[0m[0000] disk almost full                              \x1b[33mfree\x1b[0m=1 p=\"a b\"",
	"INFO[2026-12-06T21:46:22+01:00]/a/main.go:12 main.main() started   k=v",
	"\x1b[36mINFO\x1b[0m/src/main.go:38 main.main() with caller                     \x1b[36mk\x1b[0m=v",
	"WARNING disk almost full                              ",
	"panic: boom",
	"plain \xff\xfe text\x00\r",
}

// FuzzParse: whatever the line, Parse never panics, its text and message
// hold no ESC and are valid UTF-8, and its fields are a JSON object.
func FuzzParse(f *testing.F) {
	for _, s := range fuzzSeeds {
		f.Add([]byte(s), uint8(Auto))
	}
	f.Fuzz(func(t *testing.T, b []byte, format uint8) {
		p := NewParser(Format(format%uint8(len(formatNames))), time.UTC)
		l := Line{Time: time.Date(2026, 12, 6, 0, 0, 0, 0, time.UTC)}
		p.Parse(b, &l)
		if l.printable != printableByByte(l.Text) {
			t.Fatalf("text %q of %q: printable %v", l.Text, b, l.printable)
		}
		for name, v := range map[string][]byte{"text": l.Text, "message": l.Message, "logger": l.Logger, "caller": l.Caller} {
			if bytes.IndexByte(v, 0x1b) >= 0 || !utf8.Valid(v) {
				t.Fatalf("%s %q of %q has ESC or invalid UTF-8", name, v, b)
			}
		}
		if l.Fields != nil {
			var m map[string]any
			if err := json.Unmarshal(l.Fields, &m); err != nil {
				t.Fatalf("fields %q of %q: %v", l.Fields, b, err)
			}
		}
		if l.Level == zerolog.NoLevel {
			t.Fatalf("no level for %q", b)
		}
	})
}

// FuzzJSON: the hand-written scanner agrees with encoding/json both ways
// on which lines are one JSON object, and on the level and message it
// lifts out of them.
func FuzzJSON(f *testing.F) {
	for _, s := range fuzzSeeds {
		f.Add([]byte(s))
	}
	f.Add([]byte(`{"a":1e5,"b":-0.5,"c":"\/"}`))
	f.Add([]byte(` {"msg":"x"} `))
	f.Fuzz(func(t *testing.T, b []byte) {
		p := NewParser(JSON, time.UTC)
		var l Line
		got := p.parseJSON(b, &l)
		var m map[string]json.RawMessage
		want := json.Valid(b) && json.Unmarshal(b, &m) == nil && m != nil
		if got != want {
			t.Fatalf("parseJSON(%q) = %v, encoding/json says %v", b, got, want)
		}
		if !got || !utf8.Valid(b) {
			return
		}
		// The message: the first of the message keys holding a string.
		var wantMsg *string
		for _, k := range msgKeys {
			if raw, ok := m[k]; ok {
				var s string
				if json.Unmarshal(raw, &s) == nil {
					s = string(appendClean(nil, []byte(s)))
					wantMsg = &s
				}
				break
			}
		}
		switch {
		case wantMsg == nil && l.Message != nil:
			t.Fatalf("parseJSON(%q) message %q, encoding/json finds none", b, l.Message)
		case wantMsg != nil && string(l.Message) != *wantMsg:
			t.Fatalf("parseJSON(%q) message %q, encoding/json %q", b, l.Message, *wantMsg)
		}
		wantLevel := zerolog.InfoLevel
		for _, k := range levelKeys {
			if raw, ok := m[k]; ok {
				var s string
				if json.Unmarshal(raw, &s) == nil {
					if lv, ok := levelWord([]byte(s)); ok {
						wantLevel = lv
					}
				} else if lv, ok := levelNumber(bytes.TrimSpace(raw)); ok {
					wantLevel = lv
				} else if raw[0] != '-' && (raw[0] < '0' || raw[0] > '9') {
					continue
				}
				break
			}
		}
		if l.Level != wantLevel {
			t.Fatalf("parseJSON(%q) level %v, encoding/json %v", b, l.Level, wantLevel)
		}
		if l.Fields != nil {
			var fm map[string]json.RawMessage
			if err := json.Unmarshal(l.Fields, &fm); err != nil {
				t.Fatalf("fields %q: %v", l.Fields, err)
			}
		}
	})
}

// cleanByByte is appendClean written the plain way, one byte at a time:
// the reference the fast version must agree with.
func cleanByByte(dst, b []byte) []byte {
	invalid := false
	for i := 0; i < len(b); {
		c := b[i]
		switch {
		case c == 0x1b:
			i = skipEscape(b, i)
			invalid = false
		case c < utf8.RuneSelf:
			dst = append(dst, c)
			invalid = false
			i++
		default:
			if _, n := utf8.DecodeRune(b[i:]); n > 1 {
				dst = append(dst, b[i:i+n]...)
				invalid = false
				i += n
				continue
			}
			if !invalid {
				dst = utf8.AppendRune(dst, utf8.RuneError)
				invalid = true
			}
			i++
		}
	}
	return dst
}

// FuzzClean: skipEscape agrees with its byte-by-byte form; appendClean,
// appendCleanText and the parser's cleanText agree with the byte-by-byte
// reference, the printable flag and printable with their definition, and
// the start said to need no JSON escaping with jsonSafe and is as long as
// it can be.
func FuzzClean(f *testing.F) {
	for _, s := range fuzzSeeds {
		f.Add([]byte(s))
	}
	f.Add([]byte("a\x1b]0;title\x07b\xff\xfe\x1b[1mc\xe2\x82d\x1bP q\x1b\\e\x1b"))
	f.Fuzz(func(t *testing.T, b []byte) {
		for i, c := range b {
			if got, want := skipEscape(b, i), skipEscapeByByte(b, i); c == 0x1b && got != want {
				t.Fatalf("skipEscape(%q, %d) = %d, byte by byte %d", b, i, got, want)
			}
		}
		want := cleanByByte(nil, b)
		if got := appendClean(nil, b); !bytes.Equal(got, want) {
			t.Fatalf("appendClean(%q) = %q, byte by byte %q", b, got, want)
		}
		got, all, safeTo := appendCleanText([]byte("prefix"), b)
		if got = got[len("prefix"):]; !bytes.Equal(got, want) {
			t.Fatalf("appendCleanText(%q) = %q, byte by byte %q", b, got, want)
		}
		checkCleaned := func(what string, got []byte, all bool, safeTo int) {
			t.Helper()
			if want := printableByByte(got); all != want {
				t.Fatalf("%s(%q) says printable %v, want %v", what, b, all, want)
			}
			if safeTo < 0 || safeTo > len(got) || !jsonSafe(got[:safeTo]) {
				t.Fatalf("%s(%q): %q said to need no escaping", what, b, got[:max(min(safeTo, len(got)), 0)])
			}
			if safeTo < len(got) && jsonSafe(got[safeTo:safeTo+1]) {
				t.Fatalf("%s(%q): safe start %d stops before %q, which needs no escaping", what, b, safeTo, got[safeTo])
			}
		}
		checkCleaned("appendCleanText", got, all, safeTo)
		var p Parser
		text, all, safeTo := p.cleanText(b)
		if !bytes.Equal(text, want) {
			t.Fatalf("cleanText(%q) = %q, byte by byte %q", b, text, want)
		}
		checkCleaned("cleanText", text, all, safeTo)
		if got, want := printable(b), printableByByte(b); got != want {
			t.Fatalf("printable(%q) = %v, want %v", b, got, want)
		}
	})
}

// skipEscapeByByte is skipEscape with each byte of a CSI tested against
// every class.
func skipEscapeByByte(b []byte, i int) int {
	i++
	if i >= len(b) {
		return i
	}
	if b[i] != '[' {
		return skipEscape(b, i-1)
	}
	for i++; i < len(b); i++ {
		if c := b[i]; c >= 0x40 && c <= 0x7e {
			return i + 1
		} else if c < 0x20 || c > 0x3f {
			return i
		}
	}
	return i
}

func printableByByte(b []byte) bool {
	for _, c := range b {
		if c < 0x20 || c >= 0x7f {
			return false
		}
	}
	return true
}

// FuzzComplete: completing a time through the minute cache gives what
// time.Date gives, in zones with daylight saving time too, whatever the
// order of the lines.
func FuzzComplete(f *testing.F) {
	f.Add(uint8(10), uint8(25), uint8(2), uint8(30), uint8(15), uint32(946e6), int64(1792890000), uint8(0))
	f.Add(uint8(12), uint8(31), uint8(23), uint8(59), uint8(59), uint32(0), int64(1798761600), uint8(1))
	f.Add(uint8(4), uint8(5), uint8(1), uint8(45), uint8(60), uint32(1), int64(1775300000), uint8(2))
	var zones []*time.Location
	for _, name := range []string{"Europe/Berlin", "Australia/Lord_Howe", "America/St_Johns"} {
		loc, err := time.LoadLocation(name)
		if err != nil {
			f.Skip(err)
		}
		zones = append(zones, loc)
	}
	parsers := make([]*Parser, len(zones))
	for i, loc := range zones {
		parsers[i] = NewParser(Auto, loc)
	}
	f.Fuzz(func(t *testing.T, mo, d, h, mi, s uint8, ns uint32, nowUnix int64, zone uint8) {
		p := parsers[int(zone)%len(parsers)]
		now := time.Unix(1700000000+nowUnix%400000000, 0)
		got, ok := p.complete(now, int(mo), int(d), int(h), int(mi), int(s), int(ns%1e9))
		want, wantOK := completeByDate(p.loc, now, int(mo), int(d), int(h), int(mi), int(s), int(ns%1e9))
		if ok != wantOK || !got.Equal(want) {
			t.Fatalf("complete(%v, %d-%d %d:%d:%d.%09d) = %v %v, time.Date gives %v %v", now, mo, d, h, mi, s, ns%1e9, got, ok, want, wantOK)
		}
	})
}

// completeByDate is Parser.complete without its cache.
func completeByDate(loc *time.Location, now time.Time, mo, d, h, mi, s, ns int) (time.Time, bool) {
	if mo < 1 || mo > 12 || d < 1 || d > 31 || h > 23 || mi > 59 || s > 60 {
		return time.Time{}, false
	}
	now = now.In(loc)
	t := time.Date(now.Year(), time.Month(mo), d, h, mi, s, ns, loc)
	if t.Sub(now) > 24*time.Hour {
		t = t.AddDate(-1, 0, 0)
	}
	return t, true
}

// FuzzDecimal: parseDecimal, where it answers, answers what
// strconv.ParseFloat does.
func FuzzDecimal(f *testing.F) {
	for _, s := range []string{"1796589990.5", "1796589990.123456", "0.1", "9007199254740991", "9007199254740993", "1.", ".5", "12e3", "00.000000000000000000001"} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		got, ok := parseDecimal(b)
		if !ok {
			return
		}
		want, err := strconv.ParseFloat(string(b), 64)
		if err != nil || got != want {
			t.Fatalf("parseDecimal(%q) = %v, strconv.ParseFloat %v, %v", b, got, want, err)
		}
	})
}

// FuzzGoQuoted: goQuoted agrees with strconv.QuotedPrefix and
// strconv.Unquote on what starts with '"' (the parsers call it on nothing
// else).
func FuzzGoQuoted(f *testing.F) {
	for _, s := range []string{`"read tcp: i/o timeout" x=1`, `"a\"b" c`, `"\xff"`, `"a\u00e9\n"`, `"open`, `"" x`} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		if len(b) == 0 || b[0] != '"' {
			return
		}
		var buf []byte
		got, n, ok := goQuoted(b, &buf)
		q, err := strconv.QuotedPrefix(string(b))
		if ok != (err == nil) {
			t.Fatalf("goQuoted(%q) ok %v, strconv.QuotedPrefix error %v", b, ok, err)
		}
		if !ok {
			return
		}
		want, _ := strconv.Unquote(q)
		if n != len(q) || string(got) != want {
			t.Fatalf("goQuoted(%q) = %q, %d; strconv %q, %d", b, got, n, want, len(q))
		}
	})
}

// FuzzSendFast: an event built by sendFast has exactly the bytes of one
// built by sendFields, whatever the line.
func FuzzSendFast(f *testing.F) {
	for _, s := range fuzzSeeds {
		f.Add([]byte(s), false, false)
	}
	f.Add([]byte(`{"level":"NOTE","msg":"x"}`), true, false)
	f.Add([]byte("[12-06|21:46:25.946] INFO <a\"b> x.go:1 m"), false, true)
	f.Add([]byte("[12-06|21:46:25.946] \x1b[0;33mWARN\x1b[0;0m <X Chain> vm/vm.go:252 a message longer than 32 bytes, with a \" in it {\"k\": 1}"), false, false)
	f.Add([]byte(`INFO [12-06|21:46:28.000] a message longer than thirty-two bytes \ here   k=v`), false, false)
	f.Add([]byte(`{"level":"info","msg":"a message longer than thirty-two bytes\u0001 here"}`), false, false)
	f.Fuzz(func(t *testing.T, b []byte, partial, panicked bool) {
		var out bytes.Buffer
		log := zerolog.New(&out)
		r := NewBridge(Options{Log: log, Location: time.UTC}).Reader(Stderr, nil)
		r.lineState = &lineState{} // made by the first line it reads
		l := Line{Time: time.Date(2026, 12, 6, 21, 50, 0, 0, time.UTC)}
		NewParser(Auto, time.UTC).Parse(b, &l)
		l.Partial, l.Panic = partial, panicked
		// The fast escape check agrees with the plain one on every
		// string the events write.
		for name, v := range map[string][]byte{"text": l.Text, "message": l.Message, "logger": l.Logger, "caller": l.Caller, "level": l.LevelText} {
			if got, want := l.safe(v), jsonSafe(v); got != want {
				t.Fatalf("line %q: %s %q: safe %v, jsonSafe %v", b, name, v, got, want)
			}
		}
		all := jsonSafe(l.Message) && jsonSafe(l.LevelText) && jsonSafe(l.Logger) && jsonSafe(l.Caller)
		if got := l.safe4(l.Message, l.LevelText, l.Logger, l.Caller); got != all {
			t.Fatalf("line %q: safe4 %v, jsonSafe of each %v", b, got, all)
		}
		e := log.Warn()
		if !r.sendFast(e, &l) {
			e.Discard()
			return
		}
		e.Send()
		fast := out.String()
		out.Reset()
		e = log.Warn()
		r.sendFields(e, &l)
		e.Send()
		if slow := out.String(); fast != slow {
			t.Fatalf("line %q:\nsendFast   %s\nsendFields %s", b, fast, slow)
		}
	})
}

// FuzzTermTime: "MM-DD|HH:MM:SS.mmm" read through the caches of the last
// text and of its second, line after line, gives what time.Date gives.
func FuzzTermTime(f *testing.F) {
	f.Add(uint8(12), uint8(6), uint8(21), uint8(46), uint8(25), uint16(946), uint16(3), int64(1796589990), int64(0), uint8(0))
	f.Add(uint8(12), uint8(31), uint8(23), uint8(59), uint8(59), uint16(999), uint16(0), int64(1798761599), int64(1), uint8(1))
	f.Add(uint8(10), uint8(25), uint8(2), uint8(59), uint8(60), uint16(1), uint16(998), int64(1792890000), int64(0), uint8(0))
	loc, err := time.LoadLocation("Europe/Berlin")
	if err != nil {
		f.Skip(err)
	}
	f.Fuzz(func(t *testing.T, mo, d, h, mi, s uint8, ms1, ms2 uint16, nowUnix, nowStep int64, zone uint8) {
		p := NewParser(Auto, []*time.Location{time.UTC, loc}[zone%2])
		now := time.Unix(1700000000+nowUnix%400000000, 0)
		// The same text twice (the whole text's cache), another
		// millisecond (the second's), then the first at another read time.
		for k, ms := range []uint16{ms1 % 1000, ms1 % 1000, ms2 % 1000, ms1 % 1000} {
			if k == 3 {
				now = now.Add(time.Duration(nowStep%100) * time.Hour)
			}
			text := []byte(fmt.Sprintf("%02d-%02d|%02d:%02d:%02d.%03d", mo%100, d%100, h%100, mi%100, s%100, ms))
			got, ok := p.termTime(text, 0, now)
			want, wantOK := completeByDate(p.loc, now, int(mo%100), int(d%100), int(h%100), int(mi%100), int(s%100), int(ms)*1e6)
			if ok != wantOK || !got.Equal(want) {
				t.Fatalf("termTime(%s, now %v) = %v %v, time.Date gives %v %v", text, now, got, ok, want, wantOK)
			}
		}
	})
}

// zapFieldsForward is zapFields searched from the start: the first
// candidate that runs to the end.
func zapFieldsForward(msg []byte, sep byte) int {
	n := len(msg)
	if n == 0 || msg[n-1] != '}' {
		return -1
	}
	for k := range n {
		if msg[k] != '{' || k > 0 && msg[k-1] != sep {
			continue
		}
		if e, _, ok := scanValue(msg, k, 1); ok && e == n {
			return k
		}
	}
	return -1
}

// FuzzZapFields: the search from the end finds fields exactly when the
// search from the start does, and when they pick different objects both
// run to the end (zap writes the fields last, so the last one is taken).
func FuzzZapFields(f *testing.F) {
	for _, s := range []string{`m {"a": 1}`, `sent {a} to peer {"peer": "x"}`, `{"a": {"b": 1}}`, `x {"a":" {",":1}":2}`, `{}`, `a {} {"b": [1, {"c": null}]}`} {
		f.Add([]byte(s), false)
	}
	f.Fuzz(func(t *testing.T, msg []byte, tab bool) {
		sep := byte(' ')
		if tab {
			sep = '\t'
		}
		back, fwd := zapFields(msg, sep), zapFieldsForward(msg, sep)
		if (back < 0) != (fwd < 0) || back >= 0 && back < fwd {
			t.Fatalf("%q: from the end %d, from the start %d", msg, back, fwd)
		}
	})
}

// TestPrintableEveryPair: printable agrees with its definition for every
// pair of adjacent byte values, at each place of an eight-byte word and in
// both the 64-byte loop and the tail of a line.
func TestPrintableEveryPair(t *testing.T) {
	t.Parallel()
	b := bytes.Repeat([]byte{'a'}, 80)
	for _, at := range []int{0, 6, 7, 63, 71, 78} {
		for c1 := range 256 {
			for c2 := range 256 {
				b[at], b[at+1] = byte(c1), byte(c2)
				if got, want := printable(b), printableByByte(b); got != want {
					t.Fatalf("bytes %#x %#x at %d: printable %v, want %v", c1, c2, at, got, want)
				}
			}
		}
		b[at], b[at+1] = 'a', 'a'
	}
}

// FuzzScanValue: the scanner agrees with encoding/json on which texts are
// one JSON value (without surrounding whitespace), and a value it scans
// from a text's start is a valid one.
func FuzzScanValue(f *testing.F) {
	for _, s := range []string{`{"height": 42}`, `{"a": 10.5, "b": 1e3, "c": "x", "d": [1, 2E-1], "e": {"f": null}}`, `{"a": 01}`, `{"a": 1.}`, `[1e]`, `{"a":"\u001b"}`, `{"a": 7 }`, `{"a": -0}`} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		end, _, ok := scanValue(b, 0, 1)
		got := ok && end == len(b)
		want := json.Valid(b) && len(b) > 0 && skipWS(b, 0) == 0 && skipWS(b, len(b)-1) == len(b)-1
		if got != want {
			t.Fatalf("scanValue(%q) = %d %v, encoding/json says valid %v", b, end, ok, want)
		}
		if ok && !json.Valid(b[:end]) {
			t.Fatalf("scanValue(%q) scanned %q, which encoding/json rejects", b, b[:end])
		}
	})
}

// isCallerByIndex is isCaller read from the last ':'.
func isCallerByIndex(w []byte) bool {
	c := bytes.LastIndexByte(w, ':')
	if c <= 0 || c == len(w)-1 || bytes.IndexByte(w[:c], '.') < 0 {
		return false
	}
	for _, d := range w[c+1:] {
		if d < '0' || d > '9' {
			return false
		}
	}
	return true
}

// FuzzIsCaller: isCaller, read from the end, agrees with its reading from
// the last ':'.
func FuzzIsCaller(f *testing.F) {
	for _, s := range []string{"vm/vm.go:252", "x.go:1", ".:1", "a:1", "go:12", "a.b:", "a.b:1x", ":1", "a.b:12:3", "a.b.c:007"} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, w []byte) {
		if got, want := isCaller(w), isCallerByIndex(w); got != want {
			t.Fatalf("isCaller(%q) = %v, want %v", w, got, want)
		}
	})
}
