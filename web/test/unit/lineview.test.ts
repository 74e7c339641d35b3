import { test } from "node:test";
import assert from "node:assert/strict";
import { create } from "@bufbuild/protobuf";
import { timestampFromMs } from "@bufbuild/protobuf/wkt";
import { LogLevel, OutputLineSchema, OutputStream } from "../../src/gen/vmre/v1/runtime_service_pb";
import { atLeast, logLevelOf, textOf, viewOf } from "../../src/lineview";
import { Backoff } from "../../src/api";

type Init = Parameters<typeof create<typeof OutputLineSchema>>[1];

test("viewOf shows the engine's parsed form", async (t) => {
  const cases: { name: string; line: Init; level: string; message: string; fields?: [string, string][]; logger?: string }[] = [
    {
      name: "a parsed line: level, message, fields and logger from the engine",
      line: { text: "[12-06|21:46:25.946] ERROR <C Chain> vm.go:1 failed {\"n\":3}", logLevel: LogLevel.ERROR, message: "failed", fields: { n: 3, s: "v", o: { a: true } }, logger: "C Chain" },
      level: "error", message: "failed", fields: [["n", "3"], ["s", "v"], ["o", `{"a":true}`]], logger: "C Chain",
    },
    { name: "a parsed plain line on stderr stays info", line: { text: "oops", message: "oops", logLevel: LogLevel.INFO, stream: OutputStream.STDERR }, level: "info", message: "oops" },
    { name: "a JSON-looking text is not parsed again", line: { text: `{"level":"debug","msg":"x"}`, message: "", logLevel: LogLevel.UNSPECIFIED }, level: "info", message: `{"level":"debug","msg":"x"}` },
    { name: "an engine without the parsed form: its level word", line: { text: "x", level: "WARNING" }, level: "warn", message: "x" },
    { name: "an unknown level word is info", line: { text: "x", level: "notice" }, level: "info", message: "x" },
    { name: "a panic", line: { text: "panic: boom", message: "panic: boom", logLevel: LogLevel.ERROR, panic: true, dump: "goroutine 1 [running]:" }, level: "panic", message: "panic: boom" },
  ];
  for (const tc of cases) {
    await t.test(tc.name, () => {
      const v = viewOf(create(OutputLineSchema, tc.line));
      assert.equal(v.level, tc.level);
      assert.equal(v.message, tc.message);
      assert.deepEqual(v.fields, tc.fields ?? []);
      assert.equal(v.logger, tc.logger ?? "");
    });
  }
});

test("the title gives the plugin's details, then stream, pid and seq", () => {
  const v = viewOf(create(OutputLineSchema, {
    text: "x", stream: OutputStream.STDERR, pid: 42n, seq: 7n, partial: true,
    pluginTime: timestampFromMs(Date.UTC(2026, 11, 6, 21, 46, 25, 946)), caller: "vm.go:12", format: "zap-console",
  }));
  assert.equal(v.title, "plugin time 2026-12-06T21:46:25.946Z · caller vm.go:12 · format zap-console · stderr · pid 42 · #7 · partial");
});

test("levels", () => {
  assert.ok(atLeast("error", "warn"));
  assert.ok(atLeast("warn", "warn"));
  assert.ok(!atLeast("info", "warn"));
  assert.equal(logLevelOf("warn"), LogLevel.WARN);
  assert.equal(logLevelOf("trace"), LogLevel.TRACE);
});

test("textOf is one downloadable line", () => {
  const v = viewOf(create(OutputLineSchema, { message: "disk almost full", logLevel: LogLevel.WARN, logger: "db", fields: { free: 1048576, path: "/var/x y" } }));
  assert.equal(textOf(v, new Date(Date.UTC(2026, 0, 2, 3, 4, 5, 6))), `2026-01-02T03:04:05.006Z WARN <db> disk almost full free=1048576 path="/var/x y"`);
  const p = viewOf(create(OutputLineSchema, { message: "panic: boom", logLevel: LogLevel.ERROR, panic: true, dump: "goroutine 1:\nmain.main()" }));
  assert.equal(textOf(p, undefined), "- PANIC panic: boom\ngoroutine 1:\nmain.main()");
});

test("Backoff doubles to 5 s and resets", () => {
  const b = new Backoff();
  assert.deepEqual([b.next(), b.next(), b.next(), b.next(), b.next(), b.next()], [500, 1000, 2000, 4000, 5000, 5000]);
  b.reset();
  assert.equal(b.next(), 500);
});
