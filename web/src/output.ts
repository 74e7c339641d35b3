// The output panel: tails the selected runtime's output and keeps
// following it across reconnects and engine restarts, telling the user when
// lines were lost or another engine's output begins.
import { Code } from "@connectrpc/connect";
import { timestampDate, timestampMs } from "@bufbuild/protobuf/wkt";
import type { OutputLine, Runtime } from "./gen/vmre/v1/runtime_service_pb";
import { Backoff, describe, isCode, sleep, type RuntimeClient } from "./api";
import { LineCursor } from "./cursor";
import { byId, span } from "./dom";
import { fmtClock } from "./format";
import { atLeast, logLevelOf, textOf, viewOf, type Level, type LineView } from "./lineview";

const MAX_LOG_LINES = 2000;
const TAIL_LINES = 300;

export class OutputPanel {
  private readonly log = byId("log");
  private readonly title = byId("log-title");
  private readonly follow = byId<HTMLInputElement>("follow");
  private readonly levelSelect = byId<HTMLSelectElement>("level-filter");
  // The lines shown, for the download; bounded like the log.
  private shown: { view: LineView; readAt: Date | undefined }[] = [];
  private readonly cursor = new LineCursor();
  private selected: Runtime | undefined;
  private tailAbort: AbortController | null = null;

  constructor(private readonly client: RuntimeClient) {
    byId("log-clear").addEventListener("click", () => this.clear());
    byId("log-download").addEventListener("click", () => this.download());
    // The engine filters by level (TailOutput's min_level): a new level
    // tails again from the engine's recent lines.
    this.levelSelect.addEventListener("change", () => {
      const rt = this.selected;
      this.selected = undefined;
      this.show(rt);
    });
    this.follow.addEventListener("change", () => {
      if (this.follow.checked) this.log.scrollTop = this.log.scrollHeight;
    });
  }

  // tailing reports whether a tail stream is open or retrying.
  get tailing(): boolean {
    return this.tailAbort !== null;
  }

  // show makes rt (or nothing) the panel's runtime: another runtime than
  // the shown one clears the log and is tailed; the shown one (as a newer
  // message of the watch stream has it) only updates the title.
  show(rt: Runtime | undefined): void {
    const same = rt !== undefined && rt.id === this.selected?.id;
    this.selected = rt;
    this.renderTitle();
    if (same) return;
    this.stopTail();
    this.clear();
    this.cursor.reset();
    if (rt === undefined) return;
    if (rt.attached) {
      this.note("Attached runtime: its output goes wherever its owner sends it, not to this engine.");
      return;
    }
    this.startTail(rt.id);
  }

  // resume tails the shown runtime again on a fresh stream, keeping what
  // the log shows: the new stream's engine instance id tells whether its
  // lines continue it.
  resume(): void {
    const rt = this.selected;
    if (rt === undefined || rt.attached) return;
    this.stopTail();
    this.startTail(rt.id);
  }

  // note adds a line of the page's own to the log.
  note(text: string): void {
    const div = document.createElement("div");
    div.className = "line note";
    div.textContent = text;
    this.push([div]);
  }

  // minLevel is the level filter's choice, or null for every line.
  private get minLevel(): Level | null {
    const v = this.levelSelect.value;
    return v === "" ? null : (v as Level);
  }

  private clear(): void {
    this.log.replaceChildren();
    this.log.dataset.lines = "0";
    this.shown = [];
  }

  // download saves the lines shown (as the level filter lets them through)
  // as a text file, one line each, in the engine's order.
  private download(): void {
    const text = this.shown.map((s) => textOf(s.view, s.readAt)).join("\n") + (this.shown.length > 0 ? "\n" : "");
    const rt = this.selected;
    const a = document.createElement("a");
    a.href = URL.createObjectURL(new Blob([text], { type: "text/plain" }));
    a.download = `vmre-${rt ? rt.name.replace(/[^\w.-]+/g, "_") + "-" + rt.id : "output"}.log`;
    document.body.append(a);
    a.click();
    a.remove();
    setTimeout(() => URL.revokeObjectURL(a.href), 10_000);
  }

  private renderTitle(): void {
    const rt = this.selected;
    this.title.textContent = rt ? `· ${rt.name} (${rt.id}${rt.pid > 0n ? `, pid ${rt.pid}` : ""})` : "· select a runtime";
  }

  private stopTail(): void {
    this.tailAbort?.abort();
    this.tailAbort = null;
  }

  private startTail(id: string): void {
    const abort = new AbortController();
    this.tailAbort = abort;
    void this.followOutput(id, abort.signal).finally(() => {
      // An ended tail must not look live: show() would not tail again.
      if (this.tailAbort === abort) this.tailAbort = null;
    });
  }

  private async followOutput(id: string, signal: AbortSignal): Promise<void> {
    const backoff = new Backoff();
    let quiet = false; // an interruption was noted and no message came since
    while (!signal.aborted) {
      try {
        let first = true;
        const min = this.minLevel;
        const req = { id, lines: TAIL_LINES, follow: true, minLevel: min === null ? undefined : logLevelOf(min) };
        for await (const msg of this.client.tailOutput(req, { signal })) {
          if (signal.aborted) return; // replaced by a newer tail
          if (first) {
            first = false;
            if (this.cursor.begin(msg.engineInstanceId) === "new-engine") {
              this.note("The engine restarted: its output of this runtime follows.");
            }
          }
          const { show, skipped } = this.cursor.take(msg.lines);
          // With a level filter, the engine leaves the other lines out.
          if (skipped > 0n && min === null) this.note(`… ${skipped} lines skipped (written while the output stream was reconnecting)`);
          this.append(show);
          // The dropped lines came right after this message's lines.
          if (msg.droppedLines > 0n) this.note(`… ${msg.droppedLines} lines skipped (the dashboard fell behind)`);
          backoff.reset();
          quiet = false;
        }
        if (!signal.aborted) this.note("Output ended: the runtime left the engine, or the engine stopped.");
        return;
      } catch (err) {
        if (signal.aborted) return;
        if (isCode(err, Code.NotFound)) {
          this.note("This runtime is gone from the engine.");
          return;
        }
        if (!quiet) this.note(`Output stream interrupted (${describe(err)}); retrying…`);
        quiet = true;
        await sleep(backoff.next(), signal);
      }
    }
  }

  private append(lines: readonly OutputLine[]): void {
    const nodes: HTMLElement[] = [];
    const min = this.minLevel;
    for (const l of lines) {
      const v = viewOf(l);
      // An engine that does not filter by level sends every line.
      if (min !== null && !atLeast(v.level, min)) continue;
      this.shown.push({ view: v, readAt: l.time ? timestampDate(l.time) : undefined });
      const div = document.createElement("div");
      div.className = `line lv-${v.level}${v.stderr ? " stderr" : ""}`;
      div.dataset.level = v.level;
      div.title = v.title;
      const msg = span("msg", "");
      if (v.logger) msg.append(span("logger", `<${v.logger}> `));
      msg.append(v.message);
      if (v.fields.length > 0) {
        msg.append(span("fields", (v.message ? " " : "") + v.fields.map(([k, val]) => `${k}=${val}`).join(" ")));
      }
      if (v.dump) {
        const details = document.createElement("details");
        details.className = "dump";
        const summary = document.createElement("summary");
        summary.textContent = "goroutine dump";
        const pre = document.createElement("pre");
        pre.textContent = v.dump;
        details.append(summary, pre);
        msg.append(details);
      }
      const lv = span("lv", (v.pluginLevel || v.level).slice(0, 5).toUpperCase());
      if (v.pluginLevel) lv.title = `the plugin's level: ${v.pluginLevel}`;
      div.append(span("t", l.time ? fmtClock(timestampMs(l.time)) : ""), lv, msg);
      nodes.push(div);
    }
    if (this.shown.length > MAX_LOG_LINES) this.shown.splice(0, this.shown.length - MAX_LOG_LINES);
    this.push(nodes);
  }

  private push(nodes: HTMLElement[]): void {
    if (nodes.length === 0) return;
    const log = this.log;
    const atBottom = log.scrollHeight - log.scrollTop - log.clientHeight < 40;
    log.append(...nodes);
    while (log.childElementCount > MAX_LOG_LINES) log.firstElementChild!.remove();
    log.dataset.lines = String(log.querySelectorAll(".line:not(.note)").length);
    if (this.follow.checked && (atBottom || nodes.length > 0)) log.scrollTop = log.scrollHeight;
  }
}
