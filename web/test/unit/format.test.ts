import { test } from "node:test";
import assert from "node:assert/strict";
import { create } from "@bufbuild/protobuf";
import { DurationSchema, timestampFromMs } from "@bufbuild/protobuf/wkt";
import { ExitStatusSchema, RuntimeHealth, RuntimeSchema, RuntimeState } from "../../src/gen/vmre/v1/runtime_service_pb";
import { EngineClock } from "../../src/clock";
import { fmtBytes, fmtDuration, fmtExit, fmtHandshake, fmtNextAttempt, fmtPercent, fmtStateNote, isLive, stateOf, uptimeMs } from "../../src/format";

test("fmtDuration", async (t) => {
  const cases: [string, number, string][] = [
    ["zero", 0, "0s"],
    ["negative", -5000, "0s"],
    ["not a number", Number.NaN, "0s"],
    ["seconds", 59_999, "59s"],
    ["minutes", 3 * 60_000 + 7_000, "3m 07s"],
    ["hours", 2 * 3_600_000 + 5 * 60_000, "2h 05m"],
    ["days", 3 * 86_400_000 + 4 * 3_600_000, "3d 04h"],
  ];
  for (const [name, ms, want] of cases) await t.test(name, () => assert.equal(fmtDuration(ms), want));
});

test("fmtHandshake", async (t) => {
  const cases: [string, number | null, string][] = [
    ["none", null, "—"],
    ["under 10 ms", 2.5, "2.5 ms"],
    ["milliseconds", 250, "250 ms"],
    ["seconds", 1500, "1.50 s"],
  ];
  for (const [name, ms, want] of cases) {
    await t.test(name, () => {
      const d = ms === null ? undefined : create(DurationSchema, { seconds: BigInt(Math.floor(ms / 1000)), nanos: Math.round((ms % 1000) * 1e6) });
      const rt = create(RuntimeSchema, { handshakeDuration: d });
      assert.equal(fmtHandshake(rt), want);
    });
  }
});

test("fmtExit", () => {
  assert.equal(fmtExit(undefined), "—");
  assert.equal(fmtExit(create(ExitStatusSchema, { code: 3 })), "status 3");
  assert.equal(fmtExit(create(ExitStatusSchema, { code: -1, signal: "killed" })), "signal killed");
});

test("stateOf names every state and falls back to unknown", () => {
  assert.equal(stateOf(RuntimeState.RUNNING).label, "running");
  assert.equal(stateOf(RuntimeState.ATTACHED).cls, "attached");
  assert.equal(stateOf(99 as RuntimeState).label, "unknown");
});

test("uptime runs on the engine's clock and stops at the exit", () => {
  const clock = new EngineClock();
  clock.update(timestampFromMs(100_000), 40_000); // the engine is 60 s ahead
  assert.equal(clock.now(41_000), 101_000);
  const running = create(RuntimeSchema, { startedAt: timestampFromMs(90_000) });
  assert.equal(uptimeMs(running, clock.now(41_000)), 11_000);
  const exited = create(RuntimeSchema, { startedAt: timestampFromMs(90_000), exitedAt: timestampFromMs(95_000) });
  assert.equal(uptimeMs(exited, clock.now(99_000)), 5_000);
  assert.equal(uptimeMs(create(RuntimeSchema, {}), 0), null);
});

test("states of supervision", () => {
  assert.equal(stateOf(RuntimeState.BACKOFF).label, "backoff");
  assert.equal(stateOf(RuntimeState.UNHEALTHY).label, "unhealthy");
  assert.equal(stateOf(RuntimeState.LOST).label, "lost");
  assert.ok(isLive(RuntimeState.BACKOFF), "a stop cancels a pending restart");
  assert.ok(isLive(RuntimeState.UNHEALTHY));
  assert.ok(!isLive(RuntimeState.EXITED) && !isLive(RuntimeState.LOST) && !isLive(RuntimeState.ATTACHED));
});

test("fmtNextAttempt counts down on the engine's clock", () => {
  const rt = create(RuntimeSchema, { state: RuntimeState.BACKOFF, nextAttemptAt: timestampFromMs(10_000) });
  assert.equal(fmtNextAttempt(rt, 5_500), "retry in 5s");
  assert.equal(fmtNextAttempt(rt, 9_999), "retry in 1s");
  assert.equal(fmtNextAttempt(rt, 10_000), "retrying");
  assert.equal(fmtNextAttempt(create(RuntimeSchema, { state: RuntimeState.RUNNING, nextAttemptAt: timestampFromMs(10_000) }), 0), "");
});

test("fmtBytes and fmtPercent", () => {
  assert.equal(fmtBytes(512), "512 B");
  assert.equal(fmtBytes(1536), "1.50 KiB");
  assert.equal(fmtBytes(45 * 1024 * 1024), "45.0 MiB");
  assert.equal(fmtBytes(-1), "0 B");
  assert.equal(fmtPercent(3.14159), "3.1%");
  assert.equal(fmtPercent(153.6), "154%");
  assert.equal(fmtPercent(Number.NaN), "0.0%");
});

test("fmtStateNote", () => {
  const backoff = create(RuntimeSchema, { state: RuntimeState.BACKOFF, nextAttemptAt: timestampFromMs(10_000), health: RuntimeHealth.FAILING });
  assert.equal(fmtStateNote(backoff, 0), "retry in 10s");
  assert.equal(fmtStateNote(create(RuntimeSchema, { state: RuntimeState.UNHEALTHY, health: RuntimeHealth.FAILING }), 0), "health check failing");
  assert.equal(fmtStateNote(create(RuntimeSchema, { state: RuntimeState.RUNNING, health: RuntimeHealth.SERVING }), 0), "");
  assert.equal(fmtStateNote(create(RuntimeSchema, { state: RuntimeState.EXITED, health: RuntimeHealth.FAILING }), 0), "", "an ended process has no health");
});
