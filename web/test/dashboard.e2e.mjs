// Drives the dashboard in Debian's chromium with playwright-core against a
// live `vmre run` (the example VM), and fails unless a person would see it
// work: the runtime shown running with its pid, the engine's version and
// uptime, the runtime's events and log lines, a level filter and a download
// of the lines shown, a stop refused without the token, a stop with the
// token turning it exited, a restart bringing it back with a new pid, and
// a restart of the running runtime listing its events in order. Screenshots
// go to --out.
//
//   node test/dashboard.e2e.mjs --url http://127.0.0.1:9660/ --token=TOKEN --out DIR [--chromium /usr/bin/chromium]
//
// It never downloads a browser: --chromium (default /usr/bin/chromium) must
// exist. Exit status 0 on success, 1 with the reason otherwise.
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { callAPI, launchBrowser, parseOptions } from "./browser.mjs";

// eventStates lists the states of the events panel's entries, oldest first.
const eventStates = (page) => page.locator("#events li[data-state]").evaluateAll((els) => els.map((el) => el.dataset.state));

const opts = parseOptions("dashboard.e2e.mjs");

const T = 20_000; // generous: two shared cores, a race-enabled engine
const step = (msg) => console.log(`- ${msg}`);
const { context, close } = await launchBrowser(opts.chromium);
const pageErrors = [];
const offOrigin = [];
let failed = false;
try {
  const page = context.pages()[0] ?? (await context.newPage());
  const origin = new URL(opts.url).origin;
  page.on("pageerror", (e) => pageErrors.push(e.message));
  page.on("request", (r) => {
    if (!r.url().startsWith(origin) && !r.url().startsWith("data:")) offOrigin.push(r.url());
  });

  await page.goto(opts.url);
  await page.waitForSelector('html[data-ready="true"]', { timeout: T });
  step("dashboard loaded and received its snapshot");

  const row = page.locator('#rows tr[data-state="running"]').first();
  await row.waitFor({ timeout: T });
  const id = await row.getAttribute("data-id");
  const pid = Number((await row.locator("td.pid").textContent()).trim());
  if (!(pid > 0)) throw new Error(`runtime ${id} shows pid ${pid}`);
  const addr = (await row.locator("td.addr").textContent()).trim();
  if (!/^127\.0\.0\.1:\d+$/.test(addr)) throw new Error(`runtime ${id} shows VM address ${addr}`);
  step(`runtime ${id} is running with pid ${pid} at ${addr}`);

  await row.click();
  await page.waitForFunction(() => Number(document.getElementById("log").dataset.lines) >= 2, null, { timeout: T });
  const logText = await page.locator("#log").textContent();
  if (!logText.includes("handshake complete")) throw new Error(`log tail lacks the VM's lines: ${logText.slice(0, 300)}`);
  step(`log tail shows ${await page.locator("#log").getAttribute("data-lines")} lines`);
  // Let the uptime tick at least once.
  const up1 = await row.locator("td.uptime").textContent();
  await page.waitForFunction(
    ([rid, before]) => document.querySelector(`#rows tr[data-id="${rid}"] td.uptime`).textContent !== before,
    [id, up1],
    { timeout: 5000 },
  );
  const engineInfo = (await page.locator("#engine-info").textContent()).trim();
  if (!/^vmre \S+ · up \d/.test(engineInfo)) throw new Error(`header shows "${engineInfo}", want the engine's version and uptime`);
  step(`header: ${engineInfo}`);

  // The events are a panel of their own: the launch and the handshake.
  await page.waitForFunction(() => Number(document.getElementById("events").dataset.events) >= 2, null, { timeout: T });
  const firstEvents = await eventStates(page);
  if (firstEvents[0] !== "starting" || !firstEvents.includes("running")) throw new Error(`events panel lists ${firstEvents}, want starting then running`);
  if ((await page.locator("#log .line.event").count()) > 0) throw new Error("events are mixed into the output");
  step(`events panel: ${firstEvents.join(" → ")}`);

  // The level filter: the example VM logs at info, so "error" shows none
  // of its lines, and "all" brings them back.
  const before = Number(await page.locator("#log").getAttribute("data-lines"));
  await page.selectOption("#level-filter", "error");
  await page.waitForFunction(() => document.getElementById("log").dataset.lines === "0", null, { timeout: T });
  await page.waitForTimeout(300);
  const errLevels = await page.locator("#log .line:not(.note)").evaluateAll((els) => els.map((el) => el.dataset.level));
  if (errLevels.some((l) => !["error", "fatal", "panic"].includes(l))) throw new Error(`level filter "error" shows lines at ${errLevels}`);
  await page.selectOption("#level-filter", "");
  await page.waitForFunction((n) => Number(document.getElementById("log").dataset.lines) >= n, before, { timeout: T });
  step(`level filter: error shows ${errLevels.length} lines, all shows ${await page.locator("#log").getAttribute("data-lines")} again`);

  // The download holds the lines shown, as text.
  const [download] = await Promise.all([page.waitForEvent("download", { timeout: T }), page.click("#log-download")]);
  const saved = join(opts.out, download.suggestedFilename());
  await download.saveAs(saved);
  const text = readFileSync(saved, "utf8");
  if (!text.includes("handshake complete") || !/^\d{4}-\d\d-\d\dT\S+ INFO /m.test(text)) throw new Error(`download ${saved} lacks the lines shown: ${text.slice(0, 300)}`);
  step(`download ${download.suggestedFilename()}: ${text.split("\n").length - 1} lines`);
  await page.screenshot({ path: join(opts.out, "dashboard-running.png") });

  // Without the token the API refuses to stop, whatever the page does.
  const raw = await callAPI(page, "StopRuntime", id);
  if (raw.status !== 401 || raw.body.code !== "unauthenticated") throw new Error(`stop without token answered ${JSON.stringify(raw)}`);
  // Through the UI with a wrong token: refused, shown, runtime untouched.
  await row.locator("button.stop").click();
  await page.locator("#token-dialog[open]").waitFor({ timeout: T });
  await page.fill("#token-input", "not-the-token-not-the-token");
  await page.click("#token-ok");
  await page.locator("#error:not([hidden])").waitFor({ timeout: T });
  const errText = await page.locator("#error-text").textContent();
  if (!errText.includes("unauthenticated")) throw new Error(`error banner says: ${errText}`);
  if ((await row.getAttribute("data-state")) !== "running") throw new Error("runtime changed after a refused stop");
  step(`stop without a valid token refused: "${errText}"`);
  await page.screenshot({ path: join(opts.out, "dashboard-refused.png") });

  // With the token: stopping, then exited, with an exit status.
  await row.locator("button.stop").click();
  await page.locator("#token-dialog[open]").waitFor({ timeout: T });
  await page.fill("#token-input", opts.token);
  await page.click("#token-ok");
  const stopped = page.locator(`#rows tr[data-id="${id}"][data-state="exited"]`);
  await stopped.waitFor({ timeout: T });
  const exit = (await stopped.locator("td.exit").textContent()).trim();
  if (exit === "—" || exit === "") throw new Error("exited runtime shows no exit status");
  if (await page.locator("#error").isVisible()) throw new Error(`error shown after a good stop: ${await page.locator("#error-text").textContent()}`);
  step(`stopped with the token: ${id} exited (${exit})`);
  await page.screenshot({ path: join(opts.out, "dashboard-stopped.png") });

  // Restart: the token is remembered for the tab; same id, new pid.
  await stopped.locator("button.restart").click();
  const again = page.locator(`#rows tr[data-id="${id}"][data-state="running"]`);
  await again.waitFor({ timeout: T });
  const pid2 = Number((await again.locator("td.pid").textContent()).trim());
  if (!(pid2 > 0) || pid2 === pid) throw new Error(`restart shows pid ${pid2} (was ${pid})`);
  step(`restarted: ${id} running again with pid ${pid2}`);

  // A restart of the running runtime, through the page: its events, in
  // order and in time order, at the end of the events panel.
  const eventsBefore = Number(await page.locator("#events").getAttribute("data-events"));
  await again.locator("button.restart").click();
  await page.waitForFunction(
    ([rid, old]) => {
      const tr = document.querySelector(`#rows tr[data-id="${rid}"][data-state="running"]`);
      return tr && Number(tr.querySelector("td.pid").textContent) !== old;
    },
    [id, pid2],
    { timeout: T },
  );
  await page.waitForFunction((n) => Number(document.getElementById("events").dataset.events) >= n + 4, eventsBefore, { timeout: T });
  const restartEvents = (await eventStates(page)).slice(eventsBefore);
  if (restartEvents.join() !== "stopping,exited,starting,running") throw new Error(`a restart lists the events ${restartEvents}, want stopping, exited, starting, running`);
  const times = await page.locator("#events li[data-state]").evaluateAll((els) => els.map((el) => Number(el.dataset.time)));
  if (times.some((t, i) => !(t > 0) || (i > 0 && t < times[i - 1]))) throw new Error(`event times missing or out of order: ${times}`);
  step(`restart events in order: ${restartEvents.join(" → ")}`);
  await page.screenshot({ path: join(opts.out, "dashboard-events.png") });

  await page.setViewportSize({ width: 400, height: 860 });
  await page.waitForTimeout(300);
  const overflow = await page.evaluate(() => document.documentElement.scrollWidth - window.innerWidth);
  if (overflow > 0) throw new Error(`narrow window scrolls sideways by ${overflow}px`);
  await page.screenshot({ path: join(opts.out, "dashboard-narrow.png"), fullPage: true });
  step("narrow window: no horizontal scrolling");

  if (pageErrors.length > 0) throw new Error(`page errors: ${pageErrors.join("; ")}`);
  if (offOrigin.length > 0) throw new Error(`requests left the origin: ${offOrigin.join(", ")}`);
  console.log(`dashboard ok; screenshots in ${opts.out}`);
} catch (err) {
  failed = true;
  console.error(`FAIL: ${err instanceof Error ? err.message : err}`);
  try {
    const page = context.pages()[0];
    if (page) await page.screenshot({ path: join(opts.out, "dashboard-failure.png") });
  } catch {
    // the browser is gone; nothing more to show
  }
} finally {
  await close();
}
process.exit(failed ? 1 : 0);
