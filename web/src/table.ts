// The runtime table: one row per runtime the engine lists, in its order,
// updated in place so that focus and hover survive the watch stream.
import { RuntimeState, type Runtime } from "./gen/vmre/v1/runtime_service_pb";
import type { EngineClock } from "./clock";
import { button, byId } from "./dom";
import { fmtBytes, fmtDuration, fmtExit, fmtHandshake, fmtPercent, fmtStateNote, isLive, STATE_ORDER, stateOf, uptimeMs } from "./format";
import { sparkPoints, UsageHistory } from "./usage";

export type Action = "stop" | "restart";

const COLUMNS = ["state", "name", "pid", "addr", "proto", "uptime", "handshake", "usage", "exit", "actions"] as const;
type Column = (typeof COLUMNS)[number];
const LABELS: Record<Column, string> = {
  state: "State", name: "Runtime", pid: "PID", addr: "VM address", proto: "Proto",
  uptime: "Uptime", handshake: "Handshake", usage: "Resources", exit: "Exit", actions: "",
};
const SVG = "http://www.w3.org/2000/svg";
const SPARK_W = 64;
const SPARK_H = 18;

// TableEvents are what the table asks of the rest of the page.
export interface TableEvents {
  // select is called when the user picks a runtime, or when the selected
  // one left and another (or none) takes its place.
  select(id: string | null): void;
  act(kind: Action, id: string): void;
}

export class RuntimeTable {
  readonly runtimes = new Map<string, Runtime>();
  private readonly rows = new Map<string, HTMLTableRowElement>();
  private readonly usage = new UsageHistory();
  private readonly body = byId("rows");
  private readonly empty = byId("empty");
  private readonly summary = byId("summary");
  private selected: string | null = null;

  constructor(private readonly clock: EngineClock, private readonly on: TableEvents) {}

  get(id: string | null): Runtime | undefined {
    return id === null ? undefined : this.runtimes.get(id);
  }

  // replace shows exactly rts, in their order (a snapshot).
  // newEngine is true when they come from another engine than the last
  // ones, whose resource samples must not continue the new ones'.
  replace(rts: readonly Runtime[], newEngine = false): void {
    this.runtimes.clear();
    if (newEngine) this.usage.clear();
    for (const rt of rts) {
      this.runtimes.set(rt.id, rt);
      this.usage.add(rt.id, rt.usage);
    }
    this.usage.keep(this.runtimes.keys());
    this.renderAll();
  }

  // put adds or changes one runtime.
  put(rt: Runtime): void {
    const isNew = !this.runtimes.has(rt.id);
    this.runtimes.set(rt.id, rt);
    this.usage.add(rt.id, rt.usage);
    if (isNew) this.renderAll();
    else {
      this.renderRow(rt);
      this.renderSummary();
    }
  }

  remove(id: string): void {
    this.runtimes.delete(id);
    this.usage.keep(this.runtimes.keys());
    this.renderAll();
  }

  // setSelected highlights id's row.
  setSelected(id: string | null): void {
    this.selected = id;
    for (const [rid, tr] of this.rows) tr.classList.toggle("selected", rid === id);
  }

  // setBusy marks id's row while an action on it is under way.
  setBusy(id: string, busy: boolean): void {
    this.rows.get(id)?.classList.toggle("busy", busy);
  }

  // tick renders what changes with time alone: uptimes and the time to
  // the next restart attempt.
  tick(): void {
    for (const rt of this.runtimes.values()) {
      const tr = this.rows.get(rt.id);
      if (tr && !rt.exitedAt) this.renderUptime(rt, tr);
      if (tr) this.renderStateNote(rt, tr);
    }
  }

  private renderAll(): void {
    for (const [id, tr] of this.rows) {
      if (!this.runtimes.has(id)) {
        tr.remove();
        this.rows.delete(id);
      }
    }
    for (const rt of this.runtimes.values()) this.renderRow(rt);
    // Keep DOM order equal to the engine's order without touching rows that
    // are already in place (so focus and hover survive updates).
    [...this.runtimes.keys()].forEach((id, i) => {
      const tr = this.rows.get(id)!;
      if (this.body.children[i] !== tr) this.body.insertBefore(tr, this.body.children[i] ?? null);
    });
    this.empty.hidden = this.runtimes.size > 0;
    this.renderSummary();
    if (this.selected === null || !this.runtimes.has(this.selected)) {
      const all = [...this.runtimes.values()];
      const pick = all.find((rt) => rt.state === RuntimeState.RUNNING) ?? all[0];
      if (pick) this.on.select(pick.id);
      else if (this.selected !== null) this.on.select(null);
    }
  }

  private makeRow(id: string): HTMLTableRowElement {
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
    const stateNote = document.createElement("div");
    stateNote.className = "state-note";
    cell(tr, "state").append(badge, stateNote);
    cell(tr, "usage").append(usageCell());
    const name = document.createElement("div");
    name.className = "rt-name";
    const meta = document.createElement("div");
    meta.className = "rt-meta";
    cell(tr, "name").append(name, meta);
    cell(tr, "actions").append(
      button("Stop", "stop danger", () => this.on.act("stop", id)),
      button("Restart", "restart", () => this.on.act("restart", id)),
    );
    tr.addEventListener("click", (ev) => {
      if ((ev.target as HTMLElement).closest("button")) return;
      this.on.select(id);
    });
    tr.addEventListener("keydown", (ev) => {
      if (ev.key === "Enter" || ev.key === " ") {
        ev.preventDefault();
        this.on.select(id);
      }
    });
    return tr;
  }

  private renderRow(rt: Runtime): void {
    let tr = this.rows.get(rt.id);
    if (!tr) {
      tr = this.makeRow(rt.id);
      this.rows.set(rt.id, tr);
    }
    const st = stateOf(rt.state);
    tr.dataset.state = st.label;
    tr.classList.toggle("selected", rt.id === this.selected);
    const badge = cell(tr, "state").firstElementChild as HTMLElement;
    badge.className = `badge ${st.cls}`;
    badge.textContent = st.label;
    badge.title = rt.attached ? "attached: started by someone else; not ours to stop or restart" : "";

    const name = cell(tr, "name");
    (name.querySelector(".rt-name") as HTMLElement).textContent = rt.name;
    const meta = name.querySelector(".rt-meta") as HTMLElement;
    const restarts = (rt.restarts > 0 ? ` · ${rt.restarts} restart${rt.restarts > 1 ? "s" : ""}` : "") +
      (rt.failures > 0 ? ` · ${rt.failures} failure${rt.failures > 1 ? "s" : ""}` : "");
    if (rt.lastError) {
      meta.textContent = `${rt.id} · ${rt.lastError}`;
    } else if (rt.attached) {
      meta.textContent = `${rt.id} · from ${rt.peerAddr || "?"} · not ours to stop`;
    } else {
      meta.textContent = `${rt.id}${restarts}${rt.command.length > 0 ? ` · ${rt.command.join(" ")}` : ""}`;
    }
    meta.classList.toggle("err", !!rt.lastError);
    meta.title = rt.command.length > 0 ? rt.command.join(" ") : meta.textContent;

    cell(tr, "pid").textContent = rt.pid > 0n ? String(rt.pid) : "—";
    cell(tr, "addr").textContent = rt.vmAddr || "—";
    cell(tr, "proto").textContent = rt.protocolVersion ? String(rt.protocolVersion) : "—";
    cell(tr, "handshake").textContent = fmtHandshake(rt);
    const ex = rt.exitStatus;
    cell(tr, "exit").textContent = fmtExit(ex);
    cell(tr, "exit").classList.toggle("bad", !!ex && (ex.code !== 0 || ex.signal !== "") && rt.state === RuntimeState.FAILED);
    this.renderUptime(rt, tr);
    this.renderStateNote(rt, tr);
    this.renderUsage(rt, tr);

    const live = isLive(rt.state);
    const stop = tr.querySelector("button.stop") as HTMLButtonElement;
    const restart = tr.querySelector("button.restart") as HTMLButtonElement;
    stop.disabled = rt.attached || !live;
    restart.disabled = rt.attached || rt.state === RuntimeState.STOPPING || rt.state === RuntimeState.STARTING;
    stop.title = rt.attached ? "attached runtimes are not ours to stop" : "";
    restart.title = stop.title;
  }

  private renderStateNote(rt: Runtime, tr: HTMLTableRowElement): void {
    const note = cell(tr, "state").querySelector(".state-note") as HTMLElement;
    const text = fmtStateNote(rt, this.clock.now());
    if (note.textContent !== text) note.textContent = text;
  }

  private renderUsage(rt: Runtime, tr: HTMLTableRowElement): void {
    const td = cell(tr, "usage");
    const u = rt.usage;
    td.classList.toggle("none", !u);
    const q = (sel: string) => td.querySelector(sel) as Element;
    if (!u) {
      q(".cpu").textContent = "—";
      q(".rss").textContent = "";
      q(".counts").textContent = "";
      q(".spark.cpu-line").setAttribute("points", "");
      q(".spark.rss-line").setAttribute("points", "");
      td.title = "";
      return;
    }
    q(".cpu").textContent = fmtPercent(u.cpuPercent);
    q(".rss").textContent = fmtBytes(Number(u.rssBytes));
    q(".counts").textContent = `${u.processes} proc · ${u.threads} thr · ${u.openFds} fds`;
    const samples = this.usage.samples(rt.id);
    q(".spark.cpu-line").setAttribute("points", sparkPoints(samples.map((s) => s.cpu), SPARK_W, SPARK_H, 5));
    q(".spark.rss-line").setAttribute("points", sparkPoints(samples.map((s) => s.rss), SPARK_W, SPARK_H));
    td.title = `CPU ${fmtPercent(u.cpuPercent)} of one core (${u.cpuSeconds.toFixed(1)} s in all), resident memory ${fmtBytes(Number(u.rssBytes))}, ` +
      `${plural(u.processes, "process", "processes")}, ${plural(u.threads, "thread", "threads")}, ${plural(u.openFds, "open file", "open files")}; the lines show the last ${samples.length} samples (CPU solid, memory dashed)`;
  }

  private renderUptime(rt: Runtime, tr: HTMLTableRowElement): void {
    const ms = uptimeMs(rt, this.clock.now());
    const td = cell(tr, "uptime");
    td.textContent = ms === null ? "—" : fmtDuration(ms);
    td.classList.toggle("frozen", !!rt.exitedAt);
  }

  private renderSummary(): void {
    const counts = new Map<string, number>();
    for (const rt of this.runtimes.values()) {
      const l = stateOf(rt.state).label;
      counts.set(l, (counts.get(l) ?? 0) + 1);
    }
    this.summary.replaceChildren();
    for (const l of STATE_ORDER) {
      const n = counts.get(l);
      if (!n) continue;
      const s = document.createElement("span");
      s.className = `count ${l}`;
      s.textContent = `${n} ${l}`;
      this.summary.append(s);
    }
  }
}

// usageCell is the resources cell's content: CPU and memory now, their
// sparklines, and the process, thread and descriptor counts.
function usageCell(): HTMLElement {
  const box = document.createElement("div");
  box.className = "usage-box";
  const svg = document.createElementNS(SVG, "svg");
  svg.setAttribute("class", "spark");
  svg.setAttribute("viewBox", `0 0 ${SPARK_W} ${SPARK_H}`);
  svg.setAttribute("width", String(SPARK_W));
  svg.setAttribute("height", String(SPARK_H));
  svg.setAttribute("aria-hidden", "true");
  for (const cls of ["spark rss-line", "spark cpu-line"]) {
    const line = document.createElementNS(SVG, "polyline");
    line.setAttribute("class", cls);
    svg.append(line);
  }
  const now = document.createElement("div");
  now.className = "usage-now";
  for (const cls of ["cpu", "rss"]) {
    const s = document.createElement("span");
    s.className = cls;
    now.append(s);
  }
  const counts = document.createElement("div");
  counts.className = "counts";
  box.append(now, svg, counts);
  return box;
}

function plural(n: number, one: string, many: string): string {
  return `${n} ${n === 1 ? one : many}`;
}

function cell(row: HTMLTableRowElement, col: Column): HTMLTableCellElement {
  return row.querySelector(`td.${col}`) as HTMLTableCellElement;
}
