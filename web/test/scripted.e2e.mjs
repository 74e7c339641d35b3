// Drives the dashboard in Debian's chromium with playwright-core against
// scripted engine streams (routed by playwright), so that it can show what
// a test engine cannot easily be made to do: a runtime in backoff with its
// next attempt, resource samples and their sparklines, events from
// GetRuntime and the watch stream in one panel, output lines in the parsed
// form (level, logger, message, fields, a panic dump), the level filter
// asking the engine for min_level, and the download of the lines shown. The
// page itself comes from a live `vmre run` (--url).
//
//   node test/scripted.e2e.mjs --url http://127.0.0.1:9660/ --token=TOKEN --out DIR [--chromium /usr/bin/chromium]
//
// It never downloads a browser. Exit status 0 and "scripted ok" on success,
// 1 with the reasons otherwise.
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { grpcWeb, launchBrowser, loadProtobuf, parseOptions } from "./browser.mjs";

const opts = parseOptions("scripted.e2e.mjs");
const T = 20_000;
const step = (msg) => console.log(`- ${msg}`);
const pb = await loadProtobuf();
const { context, close } = await launchBrowser(opts.chromium);
const page = context.pages()[0] ?? (await context.newPage());
const pageErrors = [];
page.on("pageerror", (e) => pageErrors.push(e.message));
const failures = [];
const check = (ok, what) => {
  if (!ok) failures.push(what);
};

const now = Date.now();
const t = (ms) => pb.timestampFromMs(ms);
const MiB = 1024n * 1024n;
const usage = (ms, cpu, rss) => ({ time: t(ms), cpuSeconds: 12.5, cpuPercent: cpu, rssBytes: rss * MiB, threads: 12, openFds: 40, processes: 3 });
const base = {
  id: "r1", name: "subnet-a", command: ["/opt/vms/subnet-evm"], pid: 4242n, vmAddr: "127.0.0.1:1", protocolVersion: 44,
  startedAt: t(now - 60_000),
};
const running = { ...base, state: pb.RuntimeState.RUNNING };
const backoff = {
  ...base, state: pb.RuntimeState.BACKOFF, pid: 0n, failures: 2, nextAttemptAt: t(now + 90_000),
  exitedAt: t(now - 1_000), exitStatus: { code: 1 },
  lastError: "exited on its own: exit status 1; output: stderr: fatal: cannot open database /data/db: permission denied",
};
const watchMsg = (m) => ({ serverTime: t(now), engineInstanceId: "scripted-engine", ...m });
const watch = [
  watchMsg({ kind: { case: "snapshot", value: { runtimes: [{ ...running, usage: usage(now - 10_000, 5, 50n) }], engineStartedAt: t(now - 3_600_000), engineVersion: "v9.9.9-scripted" } } }),
  watchMsg({ kind: { case: "runtime", value: { ...running, usage: usage(now - 5_000, 40, 80n) } } }),
  watchMsg({ kind: { case: "runtime", value: { ...running, usage: usage(now, 10, 60n) } } }),
  watchMsg({
    kind: { case: "runtime", value: { ...backoff, usage: usage(now, 10, 60n) } },
    event: { time: t(now - 900), state: pb.RuntimeState.BACKOFF, message: "backoff: next attempt in 1m30s" },
  }),
];
const history = [
  { time: t(now - 60_000), state: pb.RuntimeState.STARTING, message: "launching" },
  { time: t(now - 59_000), state: pb.RuntimeState.RUNNING, message: "handshake completed in 212ms" },
  { time: t(now - 1_000), state: pb.RuntimeState.FAILED, message: "exited on its own: exit status 1" },
];
const ESC = "\u001b";
const lines = [
  {
    seq: 1n, time: t(now - 50_000), stream: pb.OutputStream.STDERR, pid: 4242n, logLevel: pb.LogLevel.INFO,
    text: `[12-06|21:46:25.946] ${ESC}[0;32mINFO${ESC}[0;0m <C Chain> vm.go:12 vm server listening {"addr": "127.0.0.1:1"}`,
    message: "vm server listening", fields: { addr: "127.0.0.1:1" }, logger: "C Chain", caller: "vm.go:12", format: "zap-console",
    pluginTime: t(now - 50_001),
  },
  {
    seq: 2n, time: t(now - 40_000), stream: pb.OutputStream.STDOUT, pid: 4242n, logLevel: pb.LogLevel.WARN,
    text: `WARN [12-06|21:46:27.100] disk almost full free_bytes=1048576`, message: "disk almost full", fields: { free_bytes: 1048576 }, format: "geth",
  },
  {
    seq: 3n, time: t(now - 2_000), stream: pb.OutputStream.STDERR, pid: 4242n, logLevel: pb.LogLevel.ERROR, panic: true,
    text: "panic: boom", message: "panic: boom", dump: "goroutine 1 [running]:\nmain.main()\n\t/src/main.go:9 +0x1d", format: "plain",
  },
];
const rank = (l) => l.logLevel;

const tailRequests = [];
let watchServed = 0;
await page.route("**/vmre.v1.RuntimeService/WatchRuntimes", async (route) => {
  // One stream; the page's reconnects afterwards wait (it shows the
  // engine unreachable meanwhile, which changes none of the checks).
  if (watchServed++ > 0) return;
  await route.fulfill(grpcWeb(pb, pb.WatchRuntimesResponseSchema, watch));
});
await page.route("**/vmre.v1.RuntimeService/GetRuntime", (route) =>
  route.fulfill(grpcWeb(pb, pb.GetRuntimeResponseSchema, [{ runtime: running, events: history }])));
await page.route("**/vmre.v1.RuntimeService/TailOutput", async (route) => {
  const body = route.request().postDataBuffer();
  const req = pb.fromBinary(pb.TailOutputRequestSchema, body.subarray(5));
  tailRequests.push(req);
  // The engine's filter: only lines at min_level or above.
  const sent = lines.filter((l) => req.minLevel === pb.LogLevel.UNSPECIFIED || rank(l) >= req.minLevel || l.panic);
  await route.fulfill(grpcWeb(pb, pb.TailOutputResponseSchema, [{ lines: sent, engineInstanceId: "scripted-engine" }]));
});

try {
  await page.goto(opts.url);
  await page.waitForSelector('html[data-ready="true"]', { timeout: T });
  const row = page.locator('#rows tr[data-id="r1"]');
  await page.locator('#rows tr[data-id="r1"][data-state="backoff"]').waitFor({ timeout: T });

  const header = (await page.locator("#engine-info").textContent()).trim();
  check(/^vmre v9\.9\.9-scripted · up 1h 00m$/.test(header), `header says "${header}", want the version and an uptime of 1h 00m`);
  const note = (await row.locator(".state-note").textContent()).trim();
  check(/^retry in 1m [23]\ds$/.test(note), `backoff row says "${note}", want "retry in 1m 30s" or a little less`);
  const meta = (await row.locator(".rt-meta").textContent()).trim();
  check(meta.includes("exit status 1"), `row meta "${meta}" lacks the last error`);
  step(`row: backoff, "${note}"; header "${header}"`);
  // At the default 1280 px, a row with a long last error, a VM address and
  // a sparkline fits the panel: no column, the Restart button included,
  // hides behind a sideways scroll.
  const tableOverflow = await page.locator(".runtimes-panel").evaluate((el) => el.scrollWidth - el.clientWidth);
  check(tableOverflow <= 0, `at 1280 px the runtimes table scrolls sideways by ${tableOverflow}px`);

  const cpu = (await row.locator("td.usage .cpu").textContent()).trim();
  const rss = (await row.locator("td.usage .rss").textContent()).trim();
  const counts = (await row.locator("td.usage .counts").textContent()).trim();
  const points = (await row.locator("polyline.cpu-line").getAttribute("points")).trim().split(" ");
  check(cpu === "10%" || cpu === "10.0%", `CPU shows "${cpu}", want the last sample's 10%`);
  check(rss === "60.0 MiB", `RSS shows "${rss}", want 60.0 MiB`);
  check(counts === "3 proc · 12 thr · 40 fds", `counts show "${counts}"`);
  check(points.length === 3, `CPU sparkline has ${points.length} points (${points.join(" ")}), want one per sample: 3`);
  // The 40% sample is the highest: it touches the top.
  check(points[1]?.endsWith(",0"), `the highest CPU sample is not at the top of the sparkline: ${points.join(" ")}`);
  step(`resources: CPU ${cpu}, RSS ${rss}, ${counts}, sparkline ${points.join(" ")}`);

  await page.waitForFunction(() => Number(document.getElementById("events").dataset.events) >= 4, null, { timeout: T });
  const evs = await page.locator("#events li[data-state]").evaluateAll((els) => els.map((el) => `${el.dataset.state}: ${el.querySelector(".msg").textContent}`));
  check(evs.join(" | ") === "starting: launching | running: handshake completed in 212ms | failed: exited on its own: exit status 1 | backoff: backoff: next attempt in 1m30s",
    `events panel lists ${evs.join(" | ")}`);
  step(`events: ${evs.join(" | ")}`);

  await page.waitForFunction(() => Number(document.getElementById("log").dataset.lines) >= 3, null, { timeout: T });
  const shown = await page.locator("#log .line:not(.note)").evaluateAll((els) => els.map((el) => ({
    level: el.dataset.level, lv: el.querySelector(".lv").textContent, text: el.querySelector(".msg").textContent, title: el.title,
    dump: el.querySelector("details.dump pre")?.textContent ?? "",
  })));
  check(shown[0]?.level === "info" && shown[0].text === "<C Chain> vm server listening addr=127.0.0.1:1",
    `first line shows ${JSON.stringify(shown[0])}, want the logger, message and fields the engine parsed`);
  check(!shown.some((l) => l.text.includes(ESC) || l.text.includes("[12-06|")), "a line shows the plugin's raw text (colour codes or its timestamp)");
  check(shown[0]?.title.includes("caller vm.go:12") && shown[0].title.includes("format zap-console"), `first line's title: ${shown[0]?.title}`);
  check(shown[1]?.level === "warn" && shown[1].text === "disk almost full free_bytes=1048576", `second line shows ${JSON.stringify(shown[1])}`);
  check(shown[2]?.level === "panic" && shown[2].dump.includes("main.main()"), `third line shows ${JSON.stringify(shown[2])}, want a panic with its dump`);
  step(`output: ${shown.map((l) => `${l.lv} ${l.text.split("\n")[0]}`).join(" | ")}`);

  await page.selectOption("#level-filter", "warn");
  await page.waitForFunction(() => document.getElementById("log").dataset.lines === "2", null, { timeout: T });
  const last = tailRequests.at(-1);
  check(last?.minLevel === pb.LogLevel.WARN, `the level filter asked the engine for min_level ${last?.minLevel}, want WARN (${pb.LogLevel.WARN})`);
  const levels = await page.locator("#log .line:not(.note)").evaluateAll((els) => els.map((el) => el.dataset.level));
  check(levels.join() === "warn,panic", `with the warn filter the log shows ${levels}`);
  check(!(await page.locator("#log .line.note").allTextContents()).some((n) => n.includes("skipped")), "the filter's gaps are reported as lost lines");

  const [download] = await Promise.all([page.waitForEvent("download", { timeout: T }), page.click("#log-download")]);
  const saved = join(opts.out, download.suggestedFilename());
  await download.saveAs(saved);
  const text = readFileSync(saved, "utf8").trimEnd().split("\n");
  check(download.suggestedFilename() === "vmre-subnet-a-r1.log", `download named ${download.suggestedFilename()}`);
  check(/^\S+Z WARN disk almost full free_bytes=1048576$/.test(text[0]) && text[1]?.endsWith("PANIC panic: boom") && text.includes("main.main()"),
    `download holds ${JSON.stringify(text)}`);
  step(`level filter warn: min_level sent, ${levels.length} lines shown, download of ${text.length} text lines`);
  await page.screenshot({ path: join(opts.out, "dashboard-scripted.png") });

  if (pageErrors.length > 0) failures.push(`page errors: ${pageErrors.join("; ")}`);
} catch (err) {
  failures.push(err instanceof Error ? err.message : String(err));
  await page.screenshot({ path: join(opts.out, "scripted-failure.png") }).catch(() => {});
} finally {
  await close();
}
if (failures.length > 0) {
  for (const f of failures) console.error(`FAIL: ${f}`);
  process.exit(1);
}
console.log(`scripted ok; screenshots in ${opts.out}`);
process.exit(0);
