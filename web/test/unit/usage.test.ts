import { test } from "node:test";
import assert from "node:assert/strict";
import { create } from "@bufbuild/protobuf";
import { timestampFromMs } from "@bufbuild/protobuf/wkt";
import { ResourceUsageSchema } from "../../src/gen/vmre/v1/runtime_service_pb";
import { sparkPoints, UsageHistory, WINDOW_MS } from "../../src/usage";

const sample = (ms: number, cpu: number, rss = 1000) => create(ResourceUsageSchema, { time: timestampFromMs(ms), cpuPercent: cpu, rssBytes: BigInt(rss) });

test("UsageHistory keeps the window's samples once each", () => {
  const h = new UsageHistory();
  h.add("r1", sample(1_000, 1));
  h.add("r1", sample(1_000, 1)); // a snapshot repeats the last sample
  h.add("r1", sample(500, 9)); // older: ignored
  h.add("r1", undefined);
  h.add("r1", sample(6_000, 2));
  assert.deepEqual(h.samples("r1").map((s) => s.cpu), [1, 2]);
  h.add("r1", sample(1_000 + WINDOW_MS + 1, 3));
  assert.deepEqual(h.samples("r1").map((s) => s.cpu), [2, 3], "the sample older than the window went");
  h.add("r2", sample(1, 1));
  h.keep(["r2"]);
  assert.deepEqual(h.samples("r1"), []);
  assert.equal(h.samples("r2").length, 1);
});

test("sparkPoints", async (t) => {
  await t.test("fewer than two values draw nothing", () => assert.equal(sparkPoints([5], 60, 20), ""));
  await t.test("scaled to the largest value", () => assert.equal(sparkPoints([0, 5, 10], 60, 20), "0,20 30,10 60,0"));
  await t.test("a floor keeps small values low", () => assert.equal(sparkPoints([0, 1], 10, 20, 4), "0,20 10,15"));
  await t.test("all zero is a line at the bottom", () => assert.equal(sparkPoints([0, 0], 10, 20), "0,20 10,20"));
});
