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
//     normally rather than with an error.
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
import { chromium } from "playwright-core";
import { existsSync, mkdirSync, mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { createInterface } from "node:readline";
import { parseArgs } from "node:util";

const { values: opts } = parseArgs({
  options: {
    url: { type: "string" },
    token: { type: "string" },
    out: { type: "string", default: "." },
    chromium: { type: "string", default: "/usr/bin/chromium" },
  },
});
if (!opts.url || !opts.token) {
  console.error("usage: reconnect.e2e.mjs --url URL --token=TOKEN [--out DIR] [--chromium PATH]");
  process.exit(2);
}
if (!existsSync(opts.chromium)) {
  console.error(`FAIL: no browser at ${opts.chromium} (apt-get install -y chromium); this test never downloads one`);
  process.exit(1);
}
mkdirSync(opts.out, { recursive: true });

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

const profile = mkdtempSync(join(tmpdir(), "vmre-chromium-"));
const context = await chromium.launchPersistentContext(profile, {
  executablePath: opts.chromium,
  headless: true,
  viewport: { width: 1280, height: 800 },
  args: [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
  ],
});
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
        return lines.some((el) => el.textContent.includes(`vm server listening addr=${addr}`)) &&
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
    const stop = await page.evaluate(async ([id, token]) => {
      const r = await fetch("/vmre.v1.RuntimeService/StopRuntime", {
        method: "POST",
        headers: { "Content-Type": "application/json", Authorization: `Bearer ${token}` },
        body: JSON.stringify({ id }),
      });
      return { status: r.status, body: await r.json() };
    }, [rt.id, opts.token]);
    if (stop.status !== 200) throw new Error(`out-of-band stop answered ${JSON.stringify(stop)}`);
    await page.locator(`#rows tr[data-id="${rt.id}"][data-state="exited"]`).waitFor({ timeout: T });
    release();
    // The row is busy until the page has handled the answer.
    await page.locator(`#rows tr[data-id="${rt.id}"]:not(.busy)`).waitFor({ timeout: T });
    await page.unroute("**/vmre.v1.RuntimeService/RestartRuntime");
    const state = await row.getAttribute("data-state");
    // Running again for the next checks, whatever the row said.
    const again = await page.evaluate(async ([id, token]) => {
      const r = await fetch("/vmre.v1.RuntimeService/RestartRuntime", {
        method: "POST",
        headers: { "Content-Type": "application/json", Authorization: `Bearer ${token}` },
        body: JSON.stringify({ id }),
      });
      return { status: r.status, body: await r.json() };
    }, [rt.id, opts.token]);
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
      await page.evaluate(() => { window.vmreSamePage = true; });
      await restartEngine(how);
      const after = await runningRow(before.pid);
      // The new engine numbers its lines from 1 again: they must all show.
      await vmOutput(after, `after the engine restart (${how})`);
      await page.locator('#conn[data-conn="live"]').waitFor({ timeout: T });
      if (!(await page.evaluate(() => window.vmreSamePage === true))) throw new Error("the page was reloaded");
      const title = await page.locator("#log-title").textContent();
      if (!title.includes(`pid ${after.pid}`)) throw new Error(`output title says "${title}", want pid ${after.pid}`);
      step(`engine restarted (${how}): ${after.id} running with pid ${after.pid} (was ${before.pid}), its output shown`);
      rt = after;
    });
  }

  await page.screenshot({ path: join(opts.out, "dashboard-reconnected.png") });

  if (pageErrors.length > 0) failures.push(`page errors: ${pageErrors.join("; ")}`);
} catch (err) {
  failures.push(err instanceof Error ? err.message : String(err));
  await page.screenshot({ path: join(opts.out, "reconnect-failure.png") }).catch(() => {});
} finally {
  await context.close();
  rmSync(profile, { recursive: true, force: true });
}
if (failures.length > 0) {
  for (const f of failures) console.error(`FAIL: ${f}`);
  process.exit(1);
}
console.log(`reconnect ok; screenshots in ${opts.out}`);
process.exit(0);
