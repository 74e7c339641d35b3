package logline_test

import (
	"testing"
	"time"

	"github.com/rs/zerolog"
	"github.com/vmre/vmre/internal/logline"
)

// readAt is when the test lines are read: 2026-12-06 21:50 in the
// engine's zone, UTC+1 here.
var (
	zone   = time.FixedZone("engine", 3600)
	readAt = time.Date(2026, 12, 6, 21, 50, 0, 0, zone)
)

type want struct {
	format     logline.Format
	level      zerolog.Level
	levelText  string
	msg        string
	fields     string
	logger     string
	caller     string
	pluginTime time.Time
}

func TestParse(t *testing.T) {
	t.Parallel()
	at := func(mo time.Month, d, h, m, s, ns int) time.Time { return time.Date(2026, mo, d, h, m, s, ns, zone) }
	tests := []struct {
		name   string
		format logline.Format
		line   string
		want   want
	}{
		// avalanchego utils/logging: zap console, " " separator, colour codes
		// from ConsoleColorLevelEncoder, logger wrapped as <name>.
		{"zap-console colour", logline.Auto,
			"[12-06|21:46:25.946] \x1b[0;33mERROR\x1b[0;0m <X Chain> rpcchainvm/vm_server.go:252 failed to initialize vm {\"error\": \"unknown codec version\", \"height\": 12}",
			want{logline.ZapConsole, zerolog.ErrorLevel, "", "failed to initialize vm", `{"error": "unknown codec version", "height": 12}`, "X Chain", "rpcchainvm/vm_server.go:252", at(12, 6, 21, 46, 25, 946e6)}},
		{"zap-console plain no logger", logline.Auto,
			"[12-06|21:46:26.001] INFO node/node.go:1120 initializing API server",
			want{logline.ZapConsole, zerolog.InfoLevel, "", "initializing API server", "", "", "node/node.go:1120", at(12, 6, 21, 46, 26, 1e6)}},
		{"zap-console verbo brace in message", logline.Auto,
			"[12-06|21:46:26.500] VERBO <P Chain> sent {a} to peer {\"peer\": \"NodeID-7x\"}",
			want{logline.ZapConsole, zerolog.TraceLevel, "", "sent {a} to peer", `{"peer": "NodeID-7x"}`, "P Chain", "", at(12, 6, 21, 46, 26, 500e6)}},
		{"zap-console unknown level", logline.Auto,
			"[12-06|21:46:26.500] UNKNO something odd",
			want{logline.ZapConsole, zerolog.InfoLevel, "UNKNO", "something odd", "", "", "", at(12, 6, 21, 46, 26, 500e6)}},
		{"zap-console last year", logline.Auto,
			"[12-31|23:59:59.999] WARN late",
			want{logline.ZapConsole, zerolog.WarnLevel, "", "late", "", "", "", time.Date(2025, 12, 31, 23, 59, 59, 999e6, zone)}},
		// go-ethereum / libevm log/format.go terminal format.
		{"geth padded attrs", logline.Auto,
			"WARN [12-06|21:46:27.100] Snapshot extension failed                peer=5a1c0e err=\"read tcp: i/o timeout\"",
			want{logline.Geth, zerolog.WarnLevel, "", "Snapshot extension failed", `{"peer":"5a1c0e","err":"read tcp: i/o timeout"}`, "", "", at(12, 6, 21, 46, 27, 100e6)}},
		{"geth colour crit", logline.Auto,
			"\x1b[35mCRIT \x1b[0m[12-06|21:46:27.100] Database corrupted \x1b[35mpath\x1b[0m=/data",
			want{logline.Geth, zerolog.FatalLevel, "", "Database corrupted", `{"path":"/data"}`, "", "", at(12, 6, 21, 46, 27, 100e6)}},
		{"geth quoted message", logline.Auto,
			`ERROR[12-06|21:46:28.000] "a=b failed"                           number=1,234,567`,
			want{logline.Geth, zerolog.ErrorLevel, "", "a=b failed", `{"number":"1,234,567"}`, "", "", at(12, 6, 21, 46, 28, 0)}},
		{"geth no attrs", logline.Auto,
			"INFO [12-06|21:46:28.000] Started P2P networking",
			want{logline.Geth, zerolog.InfoLevel, "", "Started P2P networking", "", "", "", at(12, 6, 21, 46, 28, 0)}},
		// log/slog TextHandler.
		{"slog text", logline.Auto,
			`time=2026-12-06T21:46:29.123+01:00 level=WARN msg="disk almost full" free_bytes=1048576 path="/var/lib/x y"`,
			want{logline.Logfmt, zerolog.WarnLevel, "", "disk almost full", `{"free_bytes":"1048576","path":"/var/lib/x y"}`, "", "", at(12, 6, 21, 46, 29, 123e6)}},
		{"slog level offset", logline.Auto,
			`level=INFO+4 msg=hi`,
			want{logline.Logfmt, zerolog.WarnLevel, "", "hi", "", "", "", time.Time{}}},
		{"logrus text", logline.Auto,
			`time="2026-12-06T21:46:29+01:00" level=warning msg="retrying" attempt=3`,
			want{logline.Logfmt, zerolog.WarnLevel, "", "retrying", `{"attempt":"3"}`, "", "", at(12, 6, 21, 46, 29, 0)}},
		// JSON: zerolog, zap production, hclog, slog, logrus, pino.
		{"zerolog", logline.Auto,
			`{"level":"warn","vm":"x","time":"2026-12-06T21:46:30+01:00","message":"slow block","ms":250}`,
			want{logline.JSON, zerolog.WarnLevel, "", "slow block", `{"vm":"x","ms":250}`, "", "", at(12, 6, 21, 46, 30, 0)}},
		{"zap production", logline.Auto,
			`{"level":"error","ts":1796589990.5,"logger":"chain","caller":"vm/vm.go:88","msg":"verify failed","error":"bad sig"}`,
			want{logline.JSON, zerolog.ErrorLevel, "", "verify failed", `{"error":"bad sig"}`, "chain", "vm/vm.go:88", time.Unix(1796589990, 5e8)}},
		{"hclog", logline.Auto,
			`{"@level":"debug","@message":"plugin started","@module":"plugin.x","@timestamp":"2026-12-06T21:46:31.000001+01:00","pid":7}`,
			want{logline.JSON, zerolog.DebugLevel, "", "plugin started", `{"pid":7}`, "plugin.x", "", at(12, 6, 21, 46, 31, 1000)}},
		{"avalanchego json", logline.Auto,
			`{"timestamp":"2026-12-06T21:46:31.250+0100","level":"info","logger":"C Chain","caller":"x/y.go:1","msg":"hello"}`,
			want{logline.JSON, zerolog.InfoLevel, "", "hello", "", "C Chain", "x/y.go:1", at(12, 6, 21, 46, 31, 250e6)}},
		{"pino number", logline.Auto,
			`{"level":50,"time":1796589990000,"msg":"boom","hostname":"h"}`,
			want{logline.JSON, zerolog.ErrorLevel, "", "boom", `{"hostname":"h"}`, "", "", time.UnixMilli(1796589990000)}},
		{"json unknown level, escaped message, msg kept", logline.Auto,
			`{"level":"NOTE","message":"a \"q\"\u00e9\u001b[31mred","msg":"other"}`,
			want{logline.JSON, zerolog.InfoLevel, "NOTE", "a \"q\"\u00e9red", `{"msg":"other"}`, "", "", time.Time{}}},
		{"json duplicate level last wins", logline.Auto,
			`{"level":"info","level":"error","msg":"x"}`,
			want{logline.JSON, zerolog.ErrorLevel, "", "x", "", "", "", time.Time{}}},
		{"json bad time stays a field", logline.Auto,
			`{"level":"info","time":"yesterday","msg":"x"}`,
			want{logline.JSON, zerolog.InfoLevel, "", "x", `{"time":"yesterday"}`, "", "", time.Time{}}},
		// klog / glog.
		{"klog", logline.Auto,
			"E1206 21:46:25.946123    1234 server.go:12] connection refused",
			want{logline.Klog, zerolog.ErrorLevel, "", "connection refused", "", "", "server.go:12", at(12, 6, 21, 46, 25, 946123000)}},
		{"klog structured", logline.Auto,
			`I1206 21:46:25.000001 7 pod.go:3] "Pod status updated" pod="kube-system/dns" status=ready`,
			want{logline.Klog, zerolog.InfoLevel, "", "Pod status updated", `{"pod":"kube-system/dns","status":"ready"}`, "", "pod.go:3", at(12, 6, 21, 46, 25, 1000)}},
		// hclog's text format (intLogger.logPlain), lines printed by
		// go-hclog v1.6.3 (times moved to the test's day).
		{"hclog text", logline.Auto,
			`2026-12-06T21:46:25.946+0100 [ERROR] plugin.examplevm: failed to initialize vm: error="unknown codec version" height=12`,
			want{logline.Hclog, zerolog.ErrorLevel, "", "failed to initialize vm", `{"error":"unknown codec version","height":"12"}`, "plugin.examplevm", "", at(12, 6, 21, 46, 25, 946e6)}},
		{"hclog info padding", logline.Auto,
			`2026-12-06T20:46:25.946Z [INFO]  plugin.examplevm: serving: addr=127.0.0.1:41234 protocol=46`,
			want{logline.Hclog, zerolog.InfoLevel, "", "serving", `{"addr":"127.0.0.1:41234","protocol":"46"}`, "plugin.examplevm", "", at(12, 6, 21, 46, 25, 946e6)}},
		{"hclog backslash and quotes", logline.Auto,
			`2026-12-06T20:46:25.946Z [WARN]  plugin.examplevm: disk almost full: path="C:\data dir" free_bytes=1048576 note="say \"hi\""`,
			want{logline.Hclog, zerolog.WarnLevel, "", "disk almost full", `{"path":"C:\\data dir","free_bytes":"1048576","note":"say \"hi\""}`, "plugin.examplevm", "", at(12, 6, 21, 46, 25, 946e6)}},
		{"hclog no fields", logline.Auto,
			`2026-12-06T20:46:25.946Z [DEBUG] plugin.examplevm: no fields`,
			want{logline.Hclog, zerolog.DebugLevel, "", "no fields", "", "plugin.examplevm", "", at(12, 6, 21, 46, 25, 946e6)}},
		{"hclog empty value", logline.Auto,
			`2026-12-06T20:46:25.946Z [TRACE] plugin.examplevm: empty value: k=""`,
			want{logline.Hclog, zerolog.TraceLevel, "", "empty value", `{"k":""}`, "plugin.examplevm", "", at(12, 6, 21, 46, 25, 946e6)}},
		{"hclog caller no name", logline.Auto,
			`2026-12-06T20:46:25.946Z [INFO]  logs-gen/main.go:19: with caller: n=1`,
			want{logline.Hclog, zerolog.InfoLevel, "", "with caller", `{"n":"1"}`, "", "logs-gen/main.go:19", at(12, 6, 21, 46, 25, 946e6)}},
		{"hclog colour", logline.Auto,
			"2026-12-06T20:46:25.946Z \x1b[91m[ERROR] vm: coloured: \x1b[2;1mk\x1b[0m\x1b[2m=\x1b[0m\"v w\"",
			want{logline.Hclog, zerolog.ErrorLevel, "", "coloured", `{"k":"v w"}`, "vm", "", at(12, 6, 21, 46, 25, 946e6)}},
		{"hclog nanosecond time", logline.Auto,
			`2026-12-06T20:46:25.398880519Z [WARN]  vm: custom time`,
			want{logline.Hclog, zerolog.WarnLevel, "", "custom time", "", "vm", "", at(12, 6, 21, 46, 25, 398880519)}},
		{"hclog no time", logline.Auto,
			`[INFO]  vm: no time: a=1`,
			want{logline.Hclog, zerolog.InfoLevel, "", "no time", `{"a":"1"}`, "vm", "", time.Time{}}},
		{"hclog unknown level", logline.Hclog,
			`[?????] vm: odd`,
			want{logline.Hclog, zerolog.InfoLevel, "?????", "odd", "", "vm", "", time.Time{}}},
		// logrus's TextFormatter, lines printed by logrus v1.9.3: on a
		// terminal (ForceColors) and without (logfmt).
		{"logrus logfmt", logline.Auto,
			`time="2026-12-06T21:46:22+01:00" level=warning msg="disk almost full" free_bytes=1048576 path="/data dir"`,
			want{logline.Logfmt, zerolog.WarnLevel, "", "disk almost full", `{"free_bytes":"1048576","path":"/data dir"}`, "", "", at(12, 6, 21, 46, 22, 0)}},
		{"logrus terminal", logline.Auto,
			"\x1b[33mWARN\x1b[0m[0000] disk almost full                              \x1b[33mfree_bytes\x1b[0m=1048576 \x1b[33mpath\x1b[0m=\"/data dir\"",
			want{logline.Logrus, zerolog.WarnLevel, "", "disk almost full", `{"free_bytes":"1048576","path":"/data dir"}`, "", "", time.Time{}}},
		{"logrus terminal long message", logline.Auto,
			"\x1b[31mERRO\x1b[0m[0000] a message longer than the forty-four character padding  \x1b[31merror\x1b[0m=\"read tcp: i/o timeout\"",
			want{logline.Logrus, zerolog.ErrorLevel, "", "a message longer than the forty-four character padding", `{"error":"read tcp: i/o timeout"}`, "", "", time.Time{}}},
		{"logrus terminal no fields", logline.Auto,
			"\x1b[37mDEBU\x1b[0m[0000] debug                                        ",
			want{logline.Logrus, zerolog.DebugLevel, "", "debug", "", "", "", time.Time{}}},
		{"logrus full timestamp", logline.Auto,
			"\x1b[36mINFO\x1b[0m[2026-12-06T21:46:22+01:00] full timestamp                                \x1b[36mk\x1b[0m=v",
			want{logline.Logrus, zerolog.InfoLevel, "", "full timestamp", `{"k":"v"}`, "", "", at(12, 6, 21, 46, 22, 0)}},
		{"logrus untruncated", logline.Auto,
			"\x1b[33mWARNING\x1b[0m[0000] untruncated                                   \x1b[33mk\x1b[0m=v",
			want{logline.Logrus, zerolog.WarnLevel, "", "untruncated", `{"k":"v"}`, "", "", time.Time{}}},
		{"logrus padded", logline.Auto,
			"\x1b[36mINFO   \x1b[0m[0000] padded                                        \x1b[36mk\x1b[0m=v",
			want{logline.Logrus, zerolog.InfoLevel, "", "padded", `{"k":"v"}`, "", "", time.Time{}}},
		{"logrus caller", logline.Auto,
			"INFO[0001]/src/app/main.go:12 main.main() started                                      k=v",
			want{logline.Logrus, zerolog.InfoLevel, "", "started", `{"k":"v"}`, "", "/src/app/main.go:12 main.main()", time.Time{}}},
		// logrus v1.10.2's TextFormatter with DisableTimestamp, on a
		// terminal: no brackets; the padding's trailing space or the
		// fields tell it from text that starts with a level word.
		{"logrus no time", logline.Auto,
			"\x1b[33mWARN\x1b[0m disk almost full                              \x1b[33mfree_bytes\x1b[0m=1048576 \x1b[33mpath\x1b[0m=\"/data dir\"",
			want{logline.Logrus, zerolog.WarnLevel, "", "disk almost full", `{"free_bytes":"1048576","path":"/data dir"}`, "", "", time.Time{}}},
		{"logrus no time no fields", logline.Auto,
			"\x1b[36mINFO\x1b[0m no fields                                    ",
			want{logline.Logrus, zerolog.InfoLevel, "", "no fields", "", "", "", time.Time{}}},
		{"logrus no time long message", logline.Auto,
			"\x1b[2;36mDEBU\x1b[0m a message longer than the forty-four columns of padding here  \x1b[2;36mk\x1b[0m=v",
			want{logline.Logrus, zerolog.DebugLevel, "", "a message longer than the forty-four columns of padding here", `{"k":"v"}`, "", "", time.Time{}}},
		{"logrus no time padded", logline.Auto,
			"\x1b[36mINFO   \x1b[0m no fields                                    ",
			want{logline.Logrus, zerolog.InfoLevel, "", "no fields", "", "", "", time.Time{}}},
		{"logrus no time untruncated", logline.Auto,
			"\x1b[33mWARNING\x1b[0m disk almost full                              \x1b[33mfree_bytes\x1b[0m=1048576",
			want{logline.Logrus, zerolog.WarnLevel, "", "disk almost full", `{"free_bytes":"1048576"}`, "", "", time.Time{}}},
		{"logrus no time caller", logline.Auto,
			"\x1b[36mINFO\x1b[0m/src/app/main.go:38 main.main() with caller                                   \x1b[36mk\x1b[0m=v",
			want{logline.Logrus, zerolog.InfoLevel, "", "with caller", `{"k":"v"}`, "", "/src/app/main.go:38 main.main()", time.Time{}}},
		{"level word then text is plain", logline.Auto, "INFO starting server on :8080",
			want{logline.Plain, zerolog.InfoLevel, "", "INFO starting server on :8080", "", "", "", time.Time{}}},
		{"level word and colon is plain", logline.Auto, "WARNING: disk almost full ",
			want{logline.Plain, zerolog.WarnLevel, "", "WARNING: disk almost full ", "", "", "", time.Time{}}},
		// Plain text that says its level: a level word, a colon, a space.
		{"plain fatal", logline.Auto, "fatal: cannot open database", want{logline.Plain, zerolog.FatalLevel, "", "fatal: cannot open database", "", "", "", time.Time{}}},
		{"plain cobra error", logline.Auto, "Error: unknown flag: --foo", want{logline.Plain, zerolog.ErrorLevel, "", "Error: unknown flag: --foo", "", "", "", time.Time{}}},
		{"plain level word alone", logline.Auto, "ERROR:", want{logline.Plain, zerolog.ErrorLevel, "", "ERROR:", "", "", "", time.Time{}}},
		{"plain fixed format falls back with level", logline.JSON, "warn: slow disk", want{logline.Plain, zerolog.WarnLevel, "", "warn: slow disk", "", "", "", time.Time{}}},
		{"plain fixed plain keeps info", logline.Plain, "ERROR: bad genesis", want{logline.Plain, zerolog.InfoLevel, "", "ERROR: bad genesis", "", "", "", time.Time{}}},
		{"plain word then colon without space", logline.Auto, "error:42 is a code", want{logline.Plain, zerolog.InfoLevel, "", "error:42 is a code", "", "", "", time.Time{}}},
		{"plain unknown word and colon", logline.Auto, "Note: build 7", want{logline.Plain, zerolog.InfoLevel, "", "Note: build 7", "", "", "", time.Time{}}},
		{"plain fatal error is not a level word", logline.Auto, "fatal error: all goroutines are asleep", want{logline.Plain, zerolog.InfoLevel, "", "fatal error: all goroutines are asleep", "", "", "", time.Time{}}},
		{"plain go log time", logline.Auto, "2026/12/07 20:49:41 open /x: no such file", want{logline.Plain, zerolog.InfoLevel, "", "2026/12/07 20:49:41 open /x: no such file", "", "", "", time.Time{}}},
		// Plain text and fallbacks.
		{"plain", logline.Auto, "failed to set fd limit correctly", want{logline.Plain, zerolog.InfoLevel, "", "failed to set fd limit correctly", "", "", "", time.Time{}}},
		{"plain colour", logline.Auto, "\x1b[1mbold\x1b[0m \x1b]0;title\x07text", want{logline.Plain, zerolog.InfoLevel, "", "bold text", "", "", "", time.Time{}}},
		{"broken json is plain", logline.Auto, `{"level":"error"`, want{logline.Plain, zerolog.InfoLevel, "", `{"level":"error"`, "", "", "", time.Time{}}},
		{"fixed json on console line", logline.JSON, "[12-06|21:46:26.001] INFO x", want{logline.Plain, zerolog.InfoLevel, "", "[12-06|21:46:26.001] INFO x", "", "", "", time.Time{}}},
		{"raw", logline.Raw, `{"level":"error","msg":"x"}`, want{logline.Raw, zerolog.InfoLevel, "", `{"level":"error","msg":"x"}`, "", "", "", time.Time{}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			p := logline.NewParser(tt.format, zone)
			l := logline.Line{Time: readAt}
			p.Parse([]byte(tt.line), &l)
			got := want{l.Format, l.Level, string(l.LevelText), string(l.Message), string(l.Fields), string(l.Logger), string(l.Caller), l.PluginTime}
			if !got.pluginTime.Equal(tt.want.pluginTime) {
				t.Errorf("plugin time %v, want %v", got.pluginTime, tt.want.pluginTime)
			}
			got.pluginTime = tt.want.pluginTime
			if got != tt.want {
				t.Errorf("Parse(%q)\n got %+v\nwant %+v", tt.line, got, tt.want)
			}
		})
	}
}

func TestFormatText(t *testing.T) {
	t.Parallel()
	for _, name := range []string{"auto", "raw", "plain", "json", "zap-console", "geth", "logfmt", "klog", "hclog", "logrus"} {
		var f logline.Format
		if err := f.UnmarshalText([]byte(name)); err != nil || f.String() != name {
			t.Errorf("UnmarshalText(%q) = %v, %v; String %q", name, f, err, f.String())
		}
	}
	var f logline.Format
	if err := f.UnmarshalText([]byte("xml")); err == nil {
		t.Error("UnmarshalText(xml) accepted")
	}
}
