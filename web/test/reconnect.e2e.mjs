// Drives the dashboard in Debian's chromium with playwright-core across
// engine restarts, and fails unless the page follows them without a reload:
//
//  1. a Stop or Restart answer that arrives after the watch stream has shown
//     a newer state must not put the older state back on the row;
//  2. the engine is killed (SIGKILL, as a crash) and started again on the
//     same address: the page must reconnect and show the new engine's
//     runtime and its output from the first line (the new engine numbers
//     its lines from 1 again);
//  3. the same with a clean stop (SIGTERM), which ends the output stream
//     normally rather than with an error; each time, while the engine is
//     away, the page says it is unreachable and greys its rows out, and
//     recovers by itself;
//  4. with scripted watch and output streams (routed by playwright): a
//     resync snapshot on the same watch stream does not tail the runtime
//     again; a new engine whose output numbers past the lines shown is told
//     from the same engine's later lines by the engine instance id the
//     streams carry, and a restart of the runtime in the same engine is not
//     taken for one of the engine; an initial tail the engine splits into
//     several messages is judged as a whole, whether it continues the lines
//     shown or not.
//
// The engine belongs to the caller (e2e/dashboard_test.go): to restart it,
// this script prints "restart-engine sigkill" or "restart-engine sigterm"
// on stdout and waits for a line on stdin saying it is back on the same
// address. Each check that fails is reported and the page reloaded, so the
// later checks still say something about their own defect.
//
//   node test/reconnect.e2e.mjs --url http://127.0.0.1:9660/ --token=TOKEN --out DIR [--chromium /usr/bin/chromium]
//
// It never downloads a browser. Exit status 0 and "reconnect ok" on success,
// 1 with the reasons otherwise.
import { join } from "node:path";
import { createInterface } from "node:readline";
import { callAPI, grpcWeb, launchBrowser, loadProtobuf, parseOptions } from "./browser.mjs";

const opts = parseOptions("reconnect.e2e.mjs");

const T = 30_000; // generous: two shared cores, a race-enabled engine restarting
const step = (msg) => console.log(`- ${msg}`);
const stdinLines = createInterface({ input: process.stdin })[Symbol.asyncIterator]();

// restartEngine asks the caller to restart the engine and waits until it has.
async function restartEngine(how) {
  console.log(`restart-engine ${how}`);
  const { value, done } = await stdinLines.next();
  if (done) throw new Error(`the caller did not restart the engine (${how}): stdin closed`);
  step(`caller: ${value}`);
}

const { context, close } = await launchBrowser(opts.chromium);
const page = context.pages()[0] ?? (await context.newPage());
const pageErrors = [];
page.on("pageerror", (e) => pageErrors.push(e.message));
const failures = [];

const rowOf = (id) => page.locator(`#rows tr[data-id="${id}"]`);
const pidOf = async (row) => Number((await row.locator("td.pid").textContent()).trim());

// A running row whose pid is not `not`; returns its id, pid and VM address.
async function runningRow(not = 0) {
  await page.waitForFunction(
    (old) => [...document.querySelectorAll('#rows tr[data-state="running"]')].some((tr) => {
      const pid = Number(tr.querySelector("td.pid").textContent.trim());
      return pid > 0 && pid !== old;
    }),
    not,
    { timeout: T },
  );
  for (const tr of await page.locator('#rows tr[data-state="running"]').all()) {
    const pid = await pidOf(tr);
    if (pid > 0 && pid !== not) {
      return { id: await tr.getAttribute("data-id"), pid, addr: (await tr.locator("td.addr").textContent()).trim() };
    }
  }
  throw new Error("the running row went away");
}

// Waits until the log shows the output of the VM process rt from its first
// line: the example VM's first line names its own address, which no other
// process had (lines before the handshake carry pid 0: the engine learns
// the pid from the handshake); a later line must carry the pid.
async function vmOutput(rt, what) {
  try {
    await page.waitForFunction(
      ([addr, pid]) => {
        const lines = [...document.querySelectorAll("#log .line:not(.note)")];
        // As the engine parsed it ("vm server listening addr=...") or as
        // the VM wrote it (JSON), whichever the engine sends.
        return lines.some((el) => el.textContent.includes("vm server listening") && el.textContent.includes(addr)) &&
          lines.some((el) => el.title.includes(`· pid ${pid} ·`));
      },
      [rt.addr, rt.pid],
      { timeout: T },
    );
  } catch {
    const shown = (await page.locator("#log .line").evaluateAll((els) => els.map((el) => `${el.title}: ${el.textContent}`)))
      .slice(-12).join(" | ");
    throw new Error(`${what}: the output of pid ${rt.pid} (${rt.addr}) is not shown from its first line within ${T / 1000}s; the log ends with: ${shown}`);
  }
}

async function openPage() {
  await page.goto(opts.url);
  await page.waitForSelector('html[data-ready="true"]', { timeout: T });
  const rt = await runningRow();
  await rowOf(rt.id).click();
  await vmOutput(rt, "after loading the page");
  return rt;
}

// check runs one check; a failure is recorded and the page reloaded, so
// the next check starts from a page that works.
async function check(name, fn) {
  try {
    await fn();
    step(`ok: ${name}`);
  } catch (err) {
    const msg = err instanceof Error ? err.message : String(err);
    failures.push(`${name}: ${msg}`);
    console.log(`- FAILED: ${name}: ${msg}`);
    await page.screenshot({ path: join(opts.out, `reconnect-failed-${failures.length}.png`) }).catch(() => {});
    await page.unrouteAll({ behavior: "ignoreErrors" });
    await openPage();
  }
}

// ---- scripted streams -------------------------------------------------------

// scriptedResume replaces the engine's WatchRuntimes and TailOutput with
// scripted streams, so that the engine side can be anything: one runtime,
// r1, as three engines in turn show it. Each stage serves one watch stream
// (the page reconnects when it ends; its next request is held until the
// next stage) and the output every tail opened meanwhile receives; a
// scripted stream cannot stay open, so it ends after its messages. A stage
// then checks what the page added to its log and how many tails it opened.
async function scriptedResume() {
  const pb = await loadProtobuf();
  const base = Date.now() - 3_600_000;
  // An engine (its instance id) runs r1 as process pid from `started` and
  // reads its line seq at line0 + seq ms; each engine starts after the last
  // line of the one before.
  const old = { instance: "engine-old", pid: 4101n, started: base, line0: base + 1_000 };
  const next = { instance: "engine-next", pid: 4202n, started: base + 600_000, line0: base + 601_000 };
  // The same engine after a restart of r1: another process, the same numbering.
  const nextRestarted = { ...next, pid: 4250n, started: base + 900_000 };
  const third = { instance: "engine-third", pid: 4303n, started: base + 1_200_000, line0: base + 1_201_000 };
  const snapshot = (e) => ({
    kind: {
      case: "snapshot",
      value: {
        runtimes: [{
          id: "r1", name: "scripted", command: ["/bin/scripted"], state: pb.RuntimeState.RUNNING,
          pid: e.pid, vmAddr: "127.0.0.1:1", protocolVersion: 42, startedAt: pb.timestampFromMs(e.started),
        }],
      },
    },
    serverTime: pb.timestampFromMs(Date.now()),
    engineInstanceId: e.instance,
  });
  const range = (from, to) => Array.from({ length: to - from + 1 }, (_, i) => from + i);
  const lines = (e, from, to) => range(from, to).map((n) => ({
    seq: BigInt(n),
    time: pb.timestampFromMs(e.line0 + n),
    stream: pb.OutputStream.STDOUT,
    text: `line ${n} of pid ${e.pid}`,
    pid: e.pid,
  }));

  const stages = []; // not yet served
  let wake = () => {};
  let current = null; // the stage whose watch stream was served last
  let watchRequests = 0;
  await page.route("**/vmre.v1.RuntimeService/WatchRuntimes", async (route) => {
    watchRequests++;
    while (stages.length === 0) await new Promise((resolve) => (wake = resolve));
    current = stages.shift();
    current.served = watchRequests;
    await route.fulfill(grpcWeb(pb, pb.WatchRuntimesResponseSchema, current.watch)).catch(() => {});
  });
  await page.route("**/vmre.v1.RuntimeService/TailOutput", async (route) => {
    const stage = current;
    stage.tails++;
    const msgs = stage.tail.map((ls) => ({ lines: ls, engineInstanceId: stage.engine.instance }));
    await route.fulfill(grpcWeb(pb, pb.TailOutputResponseSchema, msgs)).catch(() => {});
  });

  // The log: notes, and lines with the pid and seq their titles give.
  const entries = () => page.locator("#log .line").evaluateAll((els) => els.map((el) => {
    if (el.classList.contains("note")) return { note: el.textContent };
    const m = /· pid (\d+) · #(\d+)/.exec(el.title);
    return { pid: Number(m[1]), seq: Number(m[2]) };
  }));
  const seqs = (es) => es.filter((e) => e.seq !== undefined).map((e) => e.seq);
  const restartNotes = (es) => es.filter((e) => e.note?.includes("restarted")).map((e) => e.note);
  const sameList = (a, b) => a.length === b.length && a.every((v, i) => v === b[i]);
  const brief = (es) => {
    const s = seqs(es);
    const notes = es.filter((e) => e.note).map((e) => JSON.stringify(e.note));
    return `lines ${s.length > 0 ? `#${s[0]}..#${s.at(-1)} (${s.length})` : "none"}, notes ${notes.join(", ") || "none"}`;
  };
  const problems = [];

  // stage serves one watch stream and the tails opened during it, and waits
  // until the log shows line lastSeq and the page has asked for the next
  // watch stream: it has then handled every message of this one (and
  // opened every tail those made it open).
  // The stage's engine is the one its watch stream's snapshots name.
  async function stage(name, engine, watch, tail, lastSeq) {
    const before = (await entries()).length;
    const s = { engine, watch, tail, tails: 0, served: 0 };
    stages.push(s);
    wake();
    try {
      await page.waitForFunction(
        (seq) => [...document.querySelectorAll("#log .line:not(.note)")].some((el) => el.title.endsWith(` #${seq}`)),
        lastSeq,
        { timeout: T },
      );
      const deadline = Date.now() + T;
      while (!(s.served > 0 && watchRequests > s.served)) {
        if (Date.now() > deadline) throw new Error("the page did not reconnect");
        await page.waitForTimeout(50);
      }
    } catch (err) {
      const shown = brief((await entries()).slice(before));
      throw new Error(`${name}: line #${lastSeq} not shown within ${T / 1000}s (${err instanceof Error ? err.message : err}); the stage added ${shown}`);
    }
    const added = (await entries()).slice(before);
    step(`${name}: ${s.tails} tail stream(s); added ${brief(added)}`);
    const fail = (what) => problems.push(`${name}: ${what}; the stage added ${brief(added)}`);
    return { added, tails: s.tails, fail };
  }

  await page.goto(opts.url);

  // The first watch stream, then three resyncs on it, as a watcher that
  // fell behind gets: the same engine, whose tail goes on.
  let r = await stage("resync snapshots", old, [snapshot(old), snapshot(old), snapshot(old), snapshot(old)], [lines(old, 1, 10)], 10);
  if (r.tails !== 1) r.fail(`${r.tails} tail streams opened for one watch stream with three resync snapshots, want 1`);

  // A new engine that has already written more than 300 lines past the
  // last one shown: its tail numbers past it, and only the engine instance
  // id tells it from the same engine's later lines.
  r = await stage("a new engine, numbered past the lines shown", next, [snapshot(next)], [lines(next, 1000, 1299)], 1299);
  if (r.tails !== 1) r.fail(`${r.tails} tail streams opened, want 1`);
  if (restartNotes(r.added).length !== 1) r.fail("no note says the engine restarted");
  if (!sameList(seqs(r.added), range(1000, 1299))) r.fail("want lines #1000..#1299");

  // The same engine and process, 700 lines later: no restart, a gap.
  r = await stage("the same engine, lines later", next, [snapshot(next)], [lines(next, 2000, 2299)], 2299);
  if (restartNotes(r.added).length !== 0) r.fail("a note says the engine restarted, but it is the same process");
  if (!r.added.some((e) => e.note?.includes("700 lines skipped"))) r.fail("no note says 700 lines were skipped");
  if (!sameList(seqs(r.added), range(2000, 2299))) r.fail("want lines #2000..#2299");

  // The same engine; the initial tail comes in two messages, and the first
  // ends before the line shown last (#2299).
  r = await stage("the same engine, a tail in two messages", next, [snapshot(next)], [lines(next, 2250, 2270), lines(next, 2271, 2310)], 2310);
  if (restartNotes(r.added).length !== 0) r.fail("a note says the engine restarted, but the tail's second message holds the line shown last");
  if (!sameList(seqs(r.added), range(2300, 2310))) r.fail("want only the new lines #2300..#2310, each once");

  // The same engine, which restarted r1: a new process whose lines go on
  // from the ones shown. That is no engine restart.
  r = await stage("the same engine, the runtime restarted", nextRestarted, [snapshot(nextRestarted)],
    [[...lines(next, 2300, 2310), ...lines(nextRestarted, 2311, 2320)]], 2320);
  if (restartNotes(r.added).length !== 0) r.fail("a note says the engine restarted, but only the runtime did");
  if (!sameList(seqs(r.added), range(2311, 2320)) || r.added.some((e) => e.seq !== undefined && e.pid !== Number(nextRestarted.pid))) {
    r.fail(`want only the new lines #2311..#2320, of pid ${nextRestarted.pid}`);
  }

  // A new engine whose initial tail, in two messages, holds a line numbered
  // like the one shown last (#2320) in its second: all its lines show.
  r = await stage("a new engine, a tail in two messages", third, [snapshot(third)], [lines(third, 2200, 2290), lines(third, 2291, 2400)], 2400);
  if (restartNotes(r.added).length !== 1) r.fail("no note says the engine restarted");
  if (!sameList(seqs(r.added), range(2200, 2400)) || r.added.some((e) => e.seq !== undefined && e.pid !== Number(third.pid))) {
    r.fail(`want lines #2200..#2400 of pid ${third.pid}`);
  }

  await page.unrouteAll({ behavior: "ignoreErrors" });
  if (problems.length > 0) throw new Error(problems.join("\n  "));
  // The real engine again, for whatever follows.
  await openPage();
}

try {
  let rt = await openPage();
  step(`runtime ${rt.id} running with pid ${rt.pid}; its output is shown`);

  await check("a late Restart answer does not undo a newer state", async () => {
    await page.click("#token-btn");
    await page.locator("#token-dialog[open]").waitFor({ timeout: T });
    await page.fill("#token-input", opts.token);
    await page.click("#token-ok");

    // Hold the Restart answer until the watch stream has shown something newer.
    let release;
    const released = new Promise((resolve) => (release = resolve));
    let answered;
    const held = new Promise((resolve) => (answered = resolve));
    await page.route("**/vmre.v1.RuntimeService/RestartRuntime", async (route) => {
      const resp = await route.fetch();
      answered();
      await released;
      await route.fulfill({ response: resp });
    });
    const row = rowOf(rt.id);
    await row.locator("button.restart").click();
    await held;
    const restarted = await runningRow(rt.pid);
    // Stopped by someone else while the answer is on its way.
    const stop = await callAPI(page, "StopRuntime", rt.id, opts.token);
    if (stop.status !== 200) throw new Error(`out-of-band stop answered ${JSON.stringify(stop)}`);
    await page.locator(`#rows tr[data-id="${rt.id}"][data-state="exited"]`).waitFor({ timeout: T });
    release();
    // The row is busy until the page has handled the answer.
    await page.locator(`#rows tr[data-id="${rt.id}"]:not(.busy)`).waitFor({ timeout: T });
    await page.unroute("**/vmre.v1.RuntimeService/RestartRuntime");
    const state = await row.getAttribute("data-state");
    // Running again for the next checks, whatever the row said.
    const again = await callAPI(page, "RestartRuntime", rt.id, opts.token);
    if (again.status !== 200) throw new Error(`restart answered ${JSON.stringify(again)}`);
    if (state !== "exited") {
      throw new Error(`the runtime was stopped after its restart (pid ${restarted.pid}), but the late Restart answer made the row say "${state}"`);
    }
    rt = await runningRow(restarted.pid);
    await vmOutput(rt, "after restarting the runtime");
  });

  for (const how of ["sigkill", "sigterm"]) {
    await check(`the page follows an engine restart (${how})`, async () => {
      const before = await runningRow();
      await page.evaluate(() => {
        window.vmreSamePage = true;
        // What the page showed when it lost the engine.
        window.vmreDown = null;
        new MutationObserver((_, obs) => {
          if (document.documentElement.dataset.conn !== "down") return;
          const row = document.querySelector("#rows tr");
          window.vmreDown = {
            grey: row !== null && getComputedStyle(row).filter.includes("grayscale"),
            banner: document.getElementById("error").hidden ? "" : document.getElementById("error-text").textContent,
          };
          obs.disconnect();
        }).observe(document.documentElement, { attributes: true, attributeFilter: ["data-conn"] });
      });
      await restartEngine(how);
      const after = await runningRow(before.pid);
      // The new engine numbers its lines from 1 again: they must all show.
      await vmOutput(after, `after the engine restart (${how})`);
      await page.locator('#conn[data-conn="live"]').waitFor({ timeout: T });
      if (!(await page.evaluate(() => window.vmreSamePage === true))) throw new Error("the page was reloaded");
      const down = await page.evaluate(() => window.vmreDown);
      if (!down) throw new Error("the page never said the engine was unreachable");
      if (!down.grey || !down.banner.includes("unreachable")) throw new Error(`while the engine was away: rows grey ${down.grey}, banner "${down.banner}"`);
      if (await page.locator("#error").isVisible()) throw new Error("the unreachable banner stays after the engine came back");
      if ((await page.locator("html").getAttribute("data-conn")) !== "live") throw new Error("the page is not live again");
      const title = await page.locator("#log-title").textContent();
      if (!title.includes(`pid ${after.pid}`)) throw new Error(`output title says "${title}", want pid ${after.pid}`);
      step(`engine restarted (${how}): ${after.id} running with pid ${after.pid} (was ${before.pid}), its output shown`);
      rt = after;
    });
  }

  await page.screenshot({ path: join(opts.out, "dashboard-reconnected.png") });

  await check("scripted streams: resync snapshots and resumed tails", scriptedResume);

  if (pageErrors.length > 0) failures.push(`page errors: ${pageErrors.join("; ")}`);
} catch (err) {
  failures.push(err instanceof Error ? err.message : String(err));
  await page.screenshot({ path: join(opts.out, "reconnect-failure.png") }).catch(() => {});
} finally {
  await close();
}
if (failures.length > 0) {
  for (const f of failures) console.error(`FAIL: ${f}`);
  process.exit(1);
}
console.log(`reconnect ok; screenshots in ${opts.out}`);
process.exit(0);
