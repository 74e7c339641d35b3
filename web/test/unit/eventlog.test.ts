import { test } from "node:test";
import assert from "node:assert/strict";
import { create } from "@bufbuild/protobuf";
import { timestampFromMs } from "@bufbuild/protobuf/wkt";
import { RuntimeEventSchema, RuntimeState } from "../../src/gen/vmre/v1/runtime_service_pb";
import { EventLog, MAX_EVENTS } from "../../src/eventlog";

const ev = (ms: number, message: string, state = RuntimeState.RUNNING) => create(RuntimeEventSchema, { time: timestampFromMs(ms), state, message });
const messages = (log: EventLog) => log.list.map((e) => e.message);

test("live events wait for the history, and join it once", () => {
  const log = new EventLog();
  log.reset();
  assert.equal(log.live(ev(3, "stop requested", RuntimeState.STOPPING)), false, "held while the history is fetched");
  assert.equal(log.live(ev(4, "stopped", RuntimeState.EXITED)), false);
  // The history already had the first live event, not the second.
  log.fetched([ev(1, "launched", RuntimeState.STARTING), ev(2, "handshake completed"), ev(3, "stop requested", RuntimeState.STOPPING)]);
  assert.deepEqual(messages(log), ["launched", "handshake completed", "stop requested", "stopped"]);
  assert.equal(log.live(ev(5, "restart requested", RuntimeState.STARTING)), true);
  assert.equal(log.live(ev(5, "restart requested", RuntimeState.STARTING)), false, "a duplicate");
  assert.deepEqual(messages(log).slice(-2), ["stopped", "restart requested"]);
});

test("the log is bounded", () => {
  const log = new EventLog();
  log.fetched([]);
  for (let i = 0; i < MAX_EVENTS + 10; i++) log.live(ev(i, `e${i}`));
  assert.equal(log.list.length, MAX_EVENTS);
  assert.equal(log.list[0].message, "e10");
});
