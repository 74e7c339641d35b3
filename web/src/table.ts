// The runtime table: one row per runtime the engine lists, in its order,
// updated in place so that focus and hover survive the watch stream.
import { RuntimeState, type Runtime } from "./gen/vmre/v1/runtime_service_pb";
import type { EngineClock } from "./clock";
import { button, byId } from "./dom";
import { fmtDuration, fmtExit, fmtHandshake, stateOf, uptimeMs } from "./format";

export type Action = "stop" | "restart";

const COLUMNS = ["state", "name", "pid", "addr", "proto", "uptime", "handshake", "exit", "actions"] as const;
type Column = (typeof COLUMNS)[number];
const LABELS: Record<Column, string> = {
  state: "State", name: "Runtime", pid: "PID", addr: "VM address", proto: "Proto",
  uptime: "Uptime", handshake: "Handshake", exit: "Exit", actions: "",
};
const SUMMARY_ORDER = ["running", "attached", "starting", "stopping", "failed", "exited"];

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
  private readonly body = byId("rows");
  private readonly empty = byId("empty");
  private readonly summary = byId("summary");
  private selected: string | null = null;

  constructor(private readonly clock: EngineClock, private readonly on: TableEvents) {}

  get(id: string | null): Runtime | undefined {
    return id === null ? undefined : this.runtimes.get(id);
  }

  // replace shows exactly rts, in their order (a snapshot).
  replace(rts: readonly Runtime[]): void {
    this.runtimes.clear();
    for (const rt of rts) this.runtimes.set(rt.id, rt);
    this.renderAll();
  }

  // put adds or changes one runtime.
  put(rt: Runtime): void {
    const isNew = !this.runtimes.has(rt.id);
    this.runtimes.set(rt.id, rt);
    if (isNew) this.renderAll();
    else {
      this.renderRow(rt);
      this.renderSummary();
    }
  }

  remove(id: string): void {
    this.runtimes.delete(id);
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

  // tick renders what changes with time alone: the uptimes.
  tick(): void {
    for (const rt of this.runtimes.values()) {
      const tr = this.rows.get(rt.id);
      if (tr && !rt.exitedAt) this.renderUptime(rt, tr);
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
    cell(tr, "state").append(badge);
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
    const restarts = rt.restarts > 0 ? ` · ${rt.restarts} restart${rt.restarts > 1 ? "s" : ""}` : "";
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

    const live = rt.state === RuntimeState.RUNNING || rt.state === RuntimeState.STARTING;
    const stop = tr.querySelector("button.stop") as HTMLButtonElement;
    const restart = tr.querySelector("button.restart") as HTMLButtonElement;
    stop.disabled = rt.attached || !live;
    restart.disabled = rt.attached || rt.state === RuntimeState.STOPPING || rt.state === RuntimeState.STARTING;
    stop.title = rt.attached ? "attached runtimes are not ours to stop" : "";
    restart.title = stop.title;
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
    for (const l of SUMMARY_ORDER) {
      const n = counts.get(l);
      if (!n) continue;
      const s = document.createElement("span");
      s.className = `count ${l}`;
      s.textContent = `${n} ${l}`;
      this.summary.append(s);
    }
  }
}

function cell(row: HTMLTableRowElement, col: Column): HTMLTableCellElement {
  return row.querySelector(`td.${col}`) as HTMLTableCellElement;
}
