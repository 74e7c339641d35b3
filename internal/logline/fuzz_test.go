package logline

import (
	"bytes"
	"encoding/json"
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
