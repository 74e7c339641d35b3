// vmre dashboard: watches the engine's runtimes over gRPC-Web, tails the
// selected runtime's output, and stops or restarts runtimes with the API
// token. It talks to nothing but its own origin.
import "./style.css";
import { Code, ConnectError, createClient, type Client } from "@connectrpc/connect";
import { createGrpcWebTransport } from "@connectrpc/connect-web";
import { durationMs, timestampMs, type Timestamp } from "@bufbuild/protobuf/wkt";
import {
  OutputStream,
  RuntimeService,
  RuntimeState,
  type OutputLine,
  type Runtime,
} from "./gen/vmre/v1/runtime_service_pb";

const TOKEN_KEY = "vmre.apiToken";
const MAX_LOG_LINES = 2000;
const TAIL_LINES = 300;

const transport = createGrpcWebTransport({ baseUrl: location.origin });
const client: Client<typeof RuntimeService> = createClient(RuntimeService, transport);

function $(id: string): HTMLElement {
  const el = document.getElementById(id);
  if (!el) throw new Error(`missing #${id}`);
  return el;
}

const rowsEl = $("rows");
const emptyEl = $("empty");
const logEl = $("log");
const logTitle = $("log-title");
const followBox = $("follow") as HTMLInputElement;
const connEl = $("conn");
const connText = $("conn-text");
const summaryEl = $("summary");
const serverTimeEl = $("server-time");
const errorEl = $("error");
const errorText = $("error-text");
const tokenBtn = $("token-btn") as HTMLButtonElement;
const dialog = $("token-dialog") as HTMLDialogElement;
const tokenForm = $("token-form") as HTMLFormElement;
const tokenInput = $("token-input") as HTMLInputElement;
const tokenRemember = $("token-remember") as HTMLInputElement;
const tokenText = $("token-text");

// ---- state ----------------------------------------------------------------

const runtimes = new Map<string, Runtime>();
const rowEls = new Map<string, HTMLTableRowElement>();
let clockOffsetMs = 0; // server clock minus ours
let selected: string | null = null;
let memoryToken: string | null = null;

const STATE: Record<number, { label: string; cls: string }> = {
  [RuntimeState.UNSPECIFIED]: { label: "unknown", cls: "unknown" },
  [RuntimeState.STARTING]: { label: "starting", cls: "starting" },
  [RuntimeState.RUNNING]: { label: "running", cls: "running" },
  [RuntimeState.STOPPING]: { label: "stopping", cls: "stopping" },
  [RuntimeState.EXITED]: { label: "exited", cls: "exited" },
  [RuntimeState.FAILED]: { label: "failed", cls: "failed" },
  [RuntimeState.ATTACHED]: { label: "attached", cls: "attached" },
};

function stateOf(rt: Runtime) {
  return STATE[rt.state] ?? STATE[RuntimeState.UNSPECIFIED];
}

// ---- errors -----------------------------------------------------------------

function describe(err: unknown): string {
  if (err instanceof ConnectError) {
    return `${Code[err.code].replace(/([a-z])([A-Z])/g, "$1_$2").toLowerCase()}: ${err.rawMessage}`;
  }
  return err instanceof Error ? err.message : String(err);
}

function showError(message: string) {
  errorText.textContent = message;
  errorEl.hidden = false;
  document.documentElement.dataset.error = message;
}

function clearError() {
  errorEl.hidden = true;
  delete document.documentElement.dataset.error;
}

$("error-close").addEventListener("click", clearError);

// ---- formatting -------------------------------------------------------------

function fmtDuration(ms: number): string {
  if (!Number.isFinite(ms) || ms < 0) ms = 0;
  const s = Math.floor(ms / 1000);
  if (s < 60) return `${s}s`;
  const m = Math.floor(s / 60);
  if (m < 60) return `${m}m ${String(s % 60).padStart(2, "0")}s`;
  const h = Math.floor(m / 60);
  if (h < 24) return `${h}h ${String(m % 60).padStart(2, "0")}m`;
  return `${Math.floor(h / 24)}d ${String(h % 24).padStart(2, "0")}h`;
}

function fmtHandshake(rt: Runtime): string {
  if (!rt.handshakeDuration) return "—";
  const ms = durationMs(rt.handshakeDuration);
  return ms < 1000 ? `${ms.toFixed(ms < 10 ? 1 : 0)} ms` : `${(ms / 1000).toFixed(2)} s`;
}

function fmtExit(rt: Runtime): string {
  const ex = rt.exitStatus;
  if (!ex) return "—";
  return ex.signal ? `signal ${ex.signal}` : `status ${ex.code}`;
}

function uptimeMs(rt: Runtime): number | null {
  if (!rt.startedAt) return null;
  const start = timestampMs(rt.startedAt);
  const end = rt.exitedAt ? timestampMs(rt.exitedAt) : Date.now() + clockOffsetMs;
  return end - start;
}

function fmtClock(ms: number): string {
  const d = new Date(ms);
  const p = (n: number, w = 2) => String(n).padStart(w, "0");
  return `${p(d.getHours())}:${p(d.getMinutes())}:${p(d.getSeconds())}.${p(d.getMilliseconds(), 3)}`;
}

// ---- table ------------------------------------------------------------------

const COLUMNS = ["state", "name", "pid", "addr", "proto", "uptime", "handshake", "exit", "actions"] as const;
const LABELS: Record<(typeof COLUMNS)[number], string> = {
  state: "State", name: "Runtime", pid: "PID", addr: "VM address", proto: "Proto",
  uptime: "Uptime", handshake: "Handshake", exit: "Exit", actions: "",
};

function cell(row: HTMLTableRowElement, col: (typeof COLUMNS)[number]): HTMLTableCellElement {
  return row.querySelector(`td.${col}`) as HTMLTableCellElement;
}

function makeRow(id: string): HTMLTableRowElement {
  const tr = document.createElement("tr");
  tr.dataset.id = id;
  tr.tabIndex = 0;
  for (const col of COLUMNS) {
    const td = document.createElement("td");
    td.className = col;
    td.dataset.label = LABELS[col];
    tr.append(td);
  }
  const badge = document.createElement("span");
  badge.className = "badge";
  cell(tr, "state").append(badge);
  const name = document.createElement("div");
  name.className = "rt-name";
  const meta = document.createElement("div");
  meta.className = "rt-meta";
  cell(tr, "name").append(name, meta);

  const actions = cell(tr, "actions");
  const stop = button("Stop", "stop danger", () => void act("stop", id));
  const restart = button("Restart", "restart", () => void act("restart", id));
  actions.append(stop, restart);

  tr.addEventListener("click", (ev) => {
    if ((ev.target as HTMLElement).closest("button")) return;
    select(id);
  });
  tr.addEventListener("keydown", (ev) => {
    if (ev.key === "Enter" || ev.key === " ") {
      ev.preventDefault();
      select(id);
    }
  });
  return tr;
}

function button(text: string, cls: string, onClick: () => void): HTMLButtonElement {
  const b = document.createElement("button");
  b.type = "button";
  b.className = cls;
  b.textContent = text;
  b.addEventListener("click", onClick);
  return b;
}

function renderRow(rt: Runtime) {
  let tr = rowEls.get(rt.id);
  if (!tr) {
    tr = makeRow(rt.id);
    rowEls.set(rt.id, tr);
  }
  const st = stateOf(rt);
  tr.dataset.state = st.label;
  tr.classList.toggle("selected", rt.id === selected);
  const badge = cell(tr, "state").firstElementChild as HTMLElement;
  badge.className = `badge ${st.cls}`;
  badge.textContent = st.label;
  badge.title = rt.attached ? "attached: started by someone else; not ours to stop or restart" : "";

  const name = cell(tr, "name");
  (name.querySelector(".rt-name") as HTMLElement).textContent = rt.name;
  const meta = name.querySelector(".rt-meta") as HTMLElement;
  const restarts = rt.restarts > 0 ? ` · ${rt.restarts} restart${rt.restarts > 1 ? "s" : ""}` : "";
  if (rt.lastError) {
    meta.textContent = `${rt.id} · ${rt.lastError}`;
    meta.classList.add("err");
  } else if (rt.attached) {
    meta.textContent = `${rt.id} · from ${rt.peerAddr || "?"} · not ours to stop`;
    meta.classList.remove("err");
  } else {
    meta.textContent = `${rt.id}${restarts}${rt.command.length > 0 ? ` · ${rt.command.join(" ")}` : ""}`;
    meta.classList.remove("err");
  }
  meta.title = rt.command.length > 0 ? rt.command.join(" ") : meta.textContent;

  cell(tr, "pid").textContent = rt.pid > 0n ? String(rt.pid) : "—";
  cell(tr, "addr").textContent = rt.vmAddr || "—";
  cell(tr, "proto").textContent = rt.protocolVersion ? String(rt.protocolVersion) : "—";
  cell(tr, "handshake").textContent = fmtHandshake(rt);
  cell(tr, "exit").textContent = fmtExit(rt);
  cell(tr, "exit").classList.toggle("bad", !!rt.exitStatus && (rt.exitStatus.code !== 0 || rt.exitStatus.signal !== "") && rt.state === RuntimeState.FAILED);
  renderUptime(rt, tr);

  const live = rt.state === RuntimeState.RUNNING || rt.state === RuntimeState.STARTING;
  const stop = tr.querySelector("button.stop") as HTMLButtonElement;
  const restart = tr.querySelector("button.restart") as HTMLButtonElement;
  stop.disabled = rt.attached || !live;
  restart.disabled = rt.attached || rt.state === RuntimeState.STOPPING || rt.state === RuntimeState.STARTING;
  stop.title = rt.attached ? "attached runtimes are not ours to stop" : "";
  restart.title = stop.title;
}

function renderUptime(rt: Runtime, tr: HTMLTableRowElement) {
  const ms = uptimeMs(rt);
  const td = cell(tr, "uptime");
  td.textContent = ms === null ? "—" : fmtDuration(ms);
  td.classList.toggle("frozen", !!rt.exitedAt);
}

function renderAll() {
  const ids = [...runtimes.keys()];
  for (const [id, tr] of rowEls) {
    if (!runtimes.has(id)) {
      tr.remove();
      rowEls.delete(id);
    }
  }
  for (const rt of runtimes.values()) renderRow(rt);
  // Keep DOM order equal to the engine's order without touching rows that
  // are already in place (so focus and hover survive updates).
  ids.forEach((id, i) => {
    const tr = rowEls.get(id)!;
    if (rowsEl.children[i] !== tr) rowsEl.insertBefore(tr, rowsEl.children[i] ?? null);
  });
  emptyEl.hidden = runtimes.size > 0;
  renderSummary();
  if (selected === null || !runtimes.has(selected)) {
    const pick = [...runtimes.values()].find((rt) => rt.state === RuntimeState.RUNNING) ?? [...runtimes.values()][0];
    if (pick) select(pick.id);
    else if (selected !== null) select(null);
  } else {
    // A snapshot can bring the same id with another process (a new engine).
    renderLogTitle();
  }
}

function renderSummary() {
  const counts = new Map<string, number>();
  for (const rt of runtimes.values()) {
    const l = stateOf(rt).label;
    counts.set(l, (counts.get(l) ?? 0) + 1);
  }
  summaryEl.replaceChildren();
  for (const l of ["running", "attached", "starting", "stopping", "failed", "exited"]) {
    const n = counts.get(l);
    if (!n) continue;
    const s = document.createElement("span");
    s.className = `count ${l}`;
    s.textContent = `${n} ${l}`;
    summaryEl.append(s);
  }
}

setInterval(() => {
  for (const rt of runtimes.values()) {
    const tr = rowEls.get(rt.id);
    if (tr && !rt.exitedAt) renderUptime(rt, tr);
  }
  serverTimeEl.textContent = `engine clock ${fmtClock(Date.now() + clockOffsetMs).slice(0, 8)}`;
}, 1000);

// ---- watch stream -----------------------------------------------------------

// conn is "live" while a watch stream is established (it has sent its
// first snapshot): the rows are the engine's current picture.
let conn: "connecting" | "live" | "down" = "connecting";

function setConn(state: "connecting" | "live" | "down", text: string) {
  conn = state;
  connEl.dataset.conn = state;
  connText.textContent = text;
}

async function watch() {
  let backoff = 500;
  for (;;) {
    try {
      setConn("connecting", "connecting");
      let firstSnapshot = true;
      for await (const msg of client.watchRuntimes({})) {
        if (msg.serverTime) clockOffsetMs = timestampMs(msg.serverTime) - Date.now();
        switch (msg.kind.case) {
          case "snapshot": {
            const before = selected;
            runtimes.clear();
            for (const rt of msg.kind.value.runtimes) runtimes.set(rt.id, rt);
            setConn("live", "live");
            backoff = 500;
            if (connEl.dataset.lost) {
              delete connEl.dataset.lost;
              clearError();
            }
            renderAll();
            // A new watch stream may come from a new engine, whose output
            // the old tail stream will never show: it has ended, or it
            // stopped retrying while the watch stream was down. renderAll
            // keeps a selected runtime that is still listed, so tail it
            // again here. Only on the stream's first snapshot: a later one
            // is a resync from the same engine after the page fell behind,
            // and the tail stream goes on; tailing again would tear it down
            // and fetch TAIL_LINES lines each time the page falls behind.
            if (firstSnapshot && before !== null && selected === before) resumeTail();
            firstSnapshot = false;
            document.documentElement.dataset.ready = "true";
            break;
          }
          case "runtime": {
            const rt = msg.kind.value;
            const isNew = !runtimes.has(rt.id);
            runtimes.set(rt.id, rt);
            if (isNew) renderAll();
            else {
              renderRow(rt);
              renderSummary();
            }
            if (rt.id === selected) {
              renderLogTitle();
              if (msg.event && !rt.attached) note(`${stateOf(rt).label}: ${msg.event.message}`, "event");
            }
            break;
          }
          case "removedId":
            runtimes.delete(msg.kind.value);
            renderAll();
            break;
        }
      }
      throw new Error("watch stream ended");
    } catch (err) {
      setConn("down", "reconnecting");
      connEl.dataset.lost = "true";
      showError(`Lost the engine's watch stream (${describe(err)}). Reconnecting…`);
      await sleep(backoff);
      backoff = Math.min(backoff * 2, 5000);
    }
  }
}

function sleep(ms: number) {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

// ---- output tail ------------------------------------------------------------

let tailAbort: AbortController | null = null;
// The last line shown: its seq, and the process that wrote it and when the
// engine read it, which tell it apart from another engine's line with the
// same seq (every engine numbers a runtime's lines from 1).
let lastShown: { seq: bigint; pid: bigint; time: bigint | null } | null = null;

// timeNs is t in nanoseconds since the epoch, or null if unset.
function timeNs(t: Timestamp | undefined): bigint | null {
  return t ? t.seconds * 1_000_000_000n + BigInt(t.nanos) : null;
}

function renderLogTitle() {
  const rt = selected ? runtimes.get(selected) : undefined;
  logTitle.textContent = rt ? `· ${rt.name} (${rt.id}${rt.pid > 0n ? `, pid ${rt.pid}` : ""})` : "· select a runtime";
}

function select(id: string | null) {
  if (id === selected && tailAbort) return;
  selected = id;
  for (const [rid, tr] of rowEls) tr.classList.toggle("selected", rid === id);
  tailAbort?.abort();
  tailAbort = null;
  logEl.replaceChildren();
  logEl.dataset.lines = "0";
  forgetShown();
  renderLogTitle();
  if (id === null) return;
  const rt = runtimes.get(id);
  if (rt?.attached) {
    note("Attached runtime: its output goes wherever its owner sends it, not to this engine.");
    return;
  }
  void tail(id);
}

// resumeTail tails the selected runtime again on a fresh stream, keeping
// what the log shows; the new stream's first lines decide whether they
// continue it (see resume).
function resumeTail() {
  if (selected === null || runtimes.get(selected)?.attached) return;
  tailAbort?.abort();
  void tail(selected);
}

async function tail(id: string) {
  const abort = new AbortController();
  tailAbort = abort;
  try {
    await follow(id, abort.signal);
  } finally {
    // An ended tail must not look live: select() would ignore a click on
    // the row, and nothing would ever tail it again.
    if (tailAbort === abort) tailAbort = null;
  }
}

function forgetShown() {
  lastShown = null;
}

async function follow(id: string, signal: AbortSignal) {
  let backoff = 500;
  while (!signal.aborted) {
    try {
      let first = true;
      for await (const msg of client.tailOutput({ id, lines: TAIL_LINES, follow: true }, { signal })) {
        if (signal.aborted) return; // replaced by a newer tail
        if (first) {
          first = false;
          resume(msg.lines, runtimes.get(id));
        }
        appendLines(msg.lines);
        // The skipped lines came right after this message's lines.
        if (msg.droppedLines > 0n) note(`… ${msg.droppedLines} lines skipped (the dashboard fell behind)`);
        backoff = 500;
      }
      if (!signal.aborted) note("Output ended: the runtime left the engine.");
      return;
    } catch (err) {
      if (signal.aborted) return;
      if (err instanceof ConnectError && err.code === Code.NotFound) {
        note("This runtime is gone from the engine.");
        return;
      }
      note(`Output stream interrupted (${describe(err)}); retrying…`);
      await sleep(backoff);
      backoff = Math.min(backoff * 2, 5000);
      // With the watch stream down too, the engine may be restarting, and
      // a tail opened now would be judged (see resume) against the old
      // engine's picture of the runtime. The watch stream's first snapshot
      // tails the runtime again.
      if (conn !== "live") return;
    }
  }
}

// resume decides, on a new tail stream's first message, whether its lines
// continue the output already shown or come from a new engine, which
// numbers a runtime's lines from 1 again (then the numbering starts over,
// so that none of them is taken for a line already shown), and says so in
// the log. The message holds the oldest lines of the initial tail, which
// the engine may split into several messages; only those oldest lines and
// the runtime as the watch stream shows it decide, so the split does not
// matter.
function resume(lines: OutputLine[], rt: Runtime | undefined) {
  switch (continuation(lines, rt)) {
    case "same":
      return;
    case "gap": {
      const n = lines[0].seq - (lastShown?.seq ?? 0n) - 1n;
      if (n > 0n) note(`… ${n} lines skipped (written while the output stream was reconnecting)`);
      return;
    }
    case "new":
      forgetShown();
      note("The engine restarted: its output of this runtime follows.");
      return;
    case "changed":
      forgetShown();
      note("The runtime or the engine restarted while the output stream was reconnecting: its latest output follows.");
      return;
  }
}

// continuation tells how a new tail stream's first lines relate to the
// line shown last:
//   - "same": they reach back to it, in the same engine;
//   - "gap": they are later lines of the same engine, with lines between
//     that the tail no longer holds;
//   - "new": they come from another engine;
//   - "changed": they come from another process, and may be later lines of
//     the same engine after a restart of the runtime, or a new engine's.
//
// A line numbered like the shown one decides by its process and time. A
// line numbered before it was, in the same engine, read before it; a new
// engine reads all its lines after the old engine's last. Lines numbered
// after it only cannot tell a new engine that already wrote more lines than
// the old one from the same engine; the runtime's process can: if it was
// running when the shown line was read, it is the same engine's (a new
// engine starts its processes after the old engine ended). Times are the
// engine's clock, which must not step back across an engine restart.
function continuation(lines: OutputLine[], rt: Runtime | undefined): "same" | "gap" | "new" | "changed" {
  if (lastShown === null) return "same";
  const last = lastShown;
  const shown = lines.find((l) => l.seq === last.seq);
  if (shown) return shown.pid === last.pid && timeNs(shown.time) === last.time ? "same" : "new";
  // The same engine's output of the runtime still holds the shown line or
  // later ones: it never empties.
  if (lines.length === 0) return "new";
  const first = lines[0];
  if (first.seq < last.seq) {
    // The oldest line decides: it is a whole message before the shown one
    // when the engine split the tail before reaching it, and so far from
    // it that the moment by which lines read on stdout and on stderr can
    // be out of order does not matter.
    const t = timeNs(first.time);
    if (t !== null && last.time !== null) return t <= last.time ? "same" : "new";
    return runningWhenShown(rt) ? "same" : "new";
  }
  return runningWhenShown(rt) ? "gap" : "changed";
}

// runningWhenShown reports whether rt's current (or last) process had
// already started when the engine read the line shown last, and is not
// known to be another process than the one that wrote it.
function runningWhenShown(rt: Runtime | undefined): boolean {
  const started = timeNs(rt?.startedAt);
  const last = lastShown;
  if (!rt || started === null || last === null || last.time === null || started > last.time) return false;
  return last.pid === 0n || rt.pid === 0n || rt.pid === last.pid;
}

function note(text: string, kind: "note" | "event" = "note") {
  const div = document.createElement("div");
  div.className = `line note ${kind}`;
  div.textContent = text;
  pushLogNodes([div]);
}

function levelOf(l: OutputLine, parsed: Record<string, unknown> | null): string {
  if (l.panic) return "panic";
  const lv = (l.level || (typeof parsed?.level === "string" ? parsed.level : "")).toLowerCase();
  return lv || (l.stream === OutputStream.STDERR ? "warn" : "info");
}

function parseJSON(text: string): Record<string, unknown> | null {
  if (!text.startsWith("{")) return null;
  try {
    const v: unknown = JSON.parse(text);
    return v && typeof v === "object" && !Array.isArray(v) ? (v as Record<string, unknown>) : null;
  } catch {
    return null;
  }
}

function appendLines(lines: OutputLine[]) {
  const nodes: HTMLElement[] = [];
  for (const l of lines) {
    if (l.seq <= (lastShown?.seq ?? 0n)) continue; // already shown before a reconnect
    lastShown = { seq: l.seq, pid: l.pid, time: timeNs(l.time) };
    const parsed = parseJSON(l.text);
    const level = levelOf(l, parsed);
    const div = document.createElement("div");
    div.className = `line lv-${level}${l.stream === OutputStream.STDERR ? " stderr" : ""}`;
    const t = document.createElement("span");
    t.className = "t";
    t.textContent = l.time ? fmtClock(timestampMs(l.time)) : "";
    const lv = document.createElement("span");
    lv.className = "lv";
    lv.textContent = level.slice(0, 4).toUpperCase();
    const msg = document.createElement("span");
    msg.className = "msg";
    if (parsed) {
      const { level: _l, time: _t, message, msg: m, ...rest } = parsed;
      const text = typeof message === "string" ? message : typeof m === "string" ? m : "";
      msg.textContent = text;
      const fields = Object.entries(rest).map(([k, v]) => `${k}=${typeof v === "string" ? v : JSON.stringify(v)}`);
      if (fields.length > 0) {
        const f = document.createElement("span");
        f.className = "fields";
        f.textContent = (text ? " " : "") + fields.join(" ");
        msg.append(f);
      }
    } else {
      msg.textContent = l.text;
    }
    div.title = `${l.stream === OutputStream.STDERR ? "stderr" : "stdout"} · pid ${l.pid} · #${l.seq}${l.partial ? " · partial" : ""}`;
    div.append(t, lv, msg);
    nodes.push(div);
  }
  pushLogNodes(nodes);
}

function pushLogNodes(nodes: HTMLElement[]) {
  if (nodes.length === 0) return;
  const atBottom = logEl.scrollHeight - logEl.scrollTop - logEl.clientHeight < 40;
  logEl.append(...nodes);
  while (logEl.childElementCount > MAX_LOG_LINES) logEl.firstElementChild!.remove();
  logEl.dataset.lines = String(logEl.querySelectorAll(".line:not(.note)").length);
  if (followBox.checked && (atBottom || nodes.length > 0)) logEl.scrollTop = logEl.scrollHeight;
}

$("log-clear").addEventListener("click", () => {
  logEl.replaceChildren();
  logEl.dataset.lines = "0";
});
followBox.addEventListener("change", () => {
  if (followBox.checked) logEl.scrollTop = logEl.scrollHeight;
});

// ---- token and actions ------------------------------------------------------

function storedToken(): string | null {
  if (memoryToken) return memoryToken;
  try {
    return sessionStorage.getItem(TOKEN_KEY);
  } catch {
    return null;
  }
}

function forgetToken() {
  memoryToken = null;
  try {
    sessionStorage.removeItem(TOKEN_KEY);
  } catch {
    // storage unavailable: nothing kept
  }
  renderTokenButton();
}

function renderTokenButton() {
  const has = storedToken() !== null;
  tokenBtn.textContent = has ? "Forget token" : "Set token";
  tokenBtn.dataset.token = has ? "set" : "unset";
}

function askToken(reason: string): Promise<string | null> {
  tokenText.textContent = reason;
  tokenInput.value = "";
  dialog.showModal();
  tokenInput.focus();
  return new Promise((resolve) => {
    const done = (value: string | null) => {
      tokenForm.removeEventListener("submit", onSubmit);
      $("token-cancel").removeEventListener("click", onCancel);
      dialog.removeEventListener("cancel", onCancel);
      dialog.close();
      resolve(value);
    };
    const onSubmit = (ev: Event) => {
      ev.preventDefault();
      const v = tokenInput.value.trim();
      if (!v) return;
      memoryToken = v;
      if (tokenRemember.checked) {
        try {
          sessionStorage.setItem(TOKEN_KEY, v);
        } catch {
          // storage unavailable: keep it in memory only
        }
      }
      renderTokenButton();
      done(v);
    };
    const onCancel = (ev: Event) => {
      ev.preventDefault();
      done(null);
    };
    tokenForm.addEventListener("submit", onSubmit);
    $("token-cancel").addEventListener("click", onCancel);
    dialog.addEventListener("cancel", onCancel);
  });
}

tokenBtn.addEventListener("click", async () => {
  if (storedToken() !== null) forgetToken();
  else await askToken("Stop and restart need the engine's API token. vmre run prints the path of the file that holds it.");
});

async function act(kind: "stop" | "restart", id: string) {
  const rt = runtimes.get(id);
  const label = rt ? `${rt.name} (${id})` : id;
  let token = storedToken();
  if (token === null) {
    token = await askToken(`To ${kind} ${label}, paste the engine's API token. vmre run prints the path of the file that holds it.`);
    if (token === null) return;
  }
  const tr = rowEls.get(id);
  tr?.classList.add("busy");
  const headers = { Authorization: `Bearer ${token}` };
  try {
    // The answer's runtime is not shown: only the watch stream changes
    // rows. The answer can arrive after the stream has shown a newer state
    // or the runtime's removal, and would put the older state back.
    if (kind === "stop") await client.stopRuntime({ id }, { headers });
    else await client.restartRuntime({ id }, { headers });
    clearError();
  } catch (err) {
    if (err instanceof ConnectError && err.code === Code.Unauthenticated) {
      forgetToken();
      showError(`${kind} ${label} refused: the token was not accepted (${describe(err)}).`);
    } else {
      showError(`${kind} ${label} failed: ${describe(err)}`);
    }
  } finally {
    tr?.classList.remove("busy");
  }
}

renderTokenButton();
void watch();
