import { test } from "node:test";
import assert from "node:assert/strict";
import { create } from "@bufbuild/protobuf";
import { OutputLineSchema, OutputStream } from "../../src/gen/vmre/v1/runtime_service_pb";
import { viewOf } from "../../src/lineview";
import { Backoff } from "../../src/api";

test("viewOf", async (t) => {
  const cases: { name: string; line: Parameters<typeof create<typeof OutputLineSchema>>[1]; level: string; message: string; fields?: [string, string][] }[] = [
    { name: "plain stdout is info", line: { text: "hello", stream: OutputStream.STDOUT }, level: "info", message: "hello" },
    { name: "plain stderr is warn", line: { text: "oops", stream: OutputStream.STDERR }, level: "warn", message: "oops" },
    { name: "the engine's level wins", line: { text: "x", level: "ERROR", stream: OutputStream.STDERR }, level: "error", message: "x" },
    { name: "a panic", line: { text: "panic: boom", level: "error", panic: true }, level: "panic", message: "panic: boom" },
    {
      name: "a JSON line's message and fields",
      line: { text: `{"level":"debug","time":"t","msg":"ready","n":3,"s":"v"}`, stream: OutputStream.STDOUT },
      level: "debug", message: "ready", fields: [["n", "3"], ["s", "v"]],
    },
    { name: "a JSON array is text", line: { text: "[1,2]" }, level: "info", message: "[1,2]" },
    { name: "broken JSON is text", line: { text: "{nope" }, level: "info", message: "{nope" },
  ];
  for (const tc of cases) {
    await t.test(tc.name, () => {
      const v = viewOf(create(OutputLineSchema, tc.line));
      assert.equal(v.level, tc.level);
      assert.equal(v.message, tc.message);
      assert.deepEqual(v.fields, tc.fields ?? []);
    });
  }
});

test("the title names stream, pid and seq", () => {
  const v = viewOf(create(OutputLineSchema, { text: "x", stream: OutputStream.STDERR, pid: 42n, seq: 7n, partial: true }));
  assert.equal(v.title, "stderr · pid 42 · #7 · partial");
});

test("Backoff doubles to 5 s and resets", () => {
  const b = new Backoff();
  assert.deepEqual([b.next(), b.next(), b.next(), b.next(), b.next(), b.next()], [500, 1000, 2000, 4000, 5000, 5000]);
  b.reset();
  assert.equal(b.next(), 500);
});
