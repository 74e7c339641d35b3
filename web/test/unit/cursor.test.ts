import { test } from "node:test";
import assert from "node:assert/strict";
import { LineCursor } from "../../src/cursor";

const lines = (from: number, to: number) => Array.from({ length: to - from + 1 }, (_, i) => ({ seq: BigInt(from + i) }));
const seqs = (ls: { seq: bigint }[]) => ls.map((l) => Number(l.seq));
const range = (from: number, to: number) => seqs(lines(from, to));

test("the first stream shows every line", () => {
  const c = new LineCursor();
  assert.equal(c.begin("A"), "first");
  const { show, skipped } = c.take(lines(5, 9));
  assert.deepEqual(seqs(show), range(5, 9));
  assert.equal(skipped, 0n, "lines before a first tail are not lost lines");
});

test("a stream's later messages show their new lines, and drops are not counted twice", () => {
  const c = new LineCursor();
  c.begin("A");
  c.take(lines(1, 3));
  const { show, skipped } = c.take(lines(10, 11)); // after a dropped_lines note
  assert.deepEqual(seqs(show), [10, 11]);
  assert.equal(skipped, 0n);
});

test("a resumed stream of the same engine", async (t) => {
  const cases: { name: string; messages: [number, number][]; want: number[]; skipped: bigint }[] = [
    { name: "reaching back past the line shown last", messages: [[5, 14]], want: range(11, 14), skipped: 0n },
    { name: "beginning right after it", messages: [[11, 12]], want: [11, 12], skipped: 0n },
    { name: "with lines lost between", messages: [[20, 22]], want: range(20, 22), skipped: 9n },
    { name: "in messages all shown but the last", messages: [[1, 4], [5, 10], [11, 13]], want: range(11, 13), skipped: 0n },
    { name: "in messages, with a gap in the second", messages: [[8, 10], [15, 16]], want: [15, 16], skipped: 4n },
    { name: "with nothing new yet", messages: [[3, 10]], want: [], skipped: 0n },
  ];
  for (const tc of cases) {
    await t.test(tc.name, () => {
      const c = new LineCursor();
      c.begin("A");
      c.take(lines(1, 10));
      assert.equal(c.begin("A"), "same-engine");
      const got: number[] = [];
      let skipped = 0n;
      for (const [from, to] of tc.messages) {
        const r = c.take(lines(from, to));
        got.push(...seqs(r.show));
        skipped += r.skipped;
      }
      assert.deepEqual(got, tc.want);
      assert.equal(skipped, tc.skipped);
    });
  }
});

test("another engine's lines all show, whatever their numbers", async (t) => {
  for (const [name, from, to] of [["numbered from 1 again", 1, 4], ["numbered past the lines shown", 1000, 1299], ["numbered like them", 5, 12]] as const) {
    await t.test(name, () => {
      const c = new LineCursor();
      c.begin("A");
      c.take(lines(1, 10));
      assert.equal(c.begin("B"), "new-engine");
      const r = c.take(lines(from, to));
      assert.deepEqual(seqs(r.show), range(from, to));
      assert.equal(r.skipped, 0n);
    });
  }
});

test("reset forgets the lines shown", () => {
  const c = new LineCursor();
  c.begin("A");
  c.take(lines(1, 10));
  c.reset();
  assert.equal(c.begin("A"), "first");
  assert.deepEqual(seqs(c.take(lines(3, 4)).show), [3, 4]);
});
