// The event panel: the selected runtime's history (launched, handshake,
// unhealthy, backoff, restart, exit with its status), oldest first, from
// GetRuntime and then live from the watch stream, apart from its output.
import { timestampMs } from "@bufbuild/protobuf/wkt";
import type { Runtime, RuntimeEvent } from "./gen/vmre/v1/runtime_service_pb";
import { describe, type RuntimeClient } from "./api";
import { byId, span } from "./dom";
import { EventLog } from "./eventlog";
import { fmtClock, stateOf } from "./format";

export class EventPanel {
  private readonly list = byId("events");
  private readonly title = byId("events-title");
  private readonly log = new EventLog();
  private id: string | null = null;
  private fetches = 0; // numbers GetRuntime calls: only the latest answer counts

  constructor(private readonly client: RuntimeClient) {}

  // show makes rt's events the panel's; another runtime's (or refetch,
  // after the watch stream was down and may have missed events) fetches
  // its history.
  show(rt: Runtime | undefined, refetch = false): void {
    this.title.textContent = rt ? `· ${rt.name} (${rt.id})` : "";
    const id = rt?.id ?? null;
    if (id === this.id && !refetch) return;
    this.id = id;
    this.log.reset();
    this.render();
    if (id !== null) void this.fetch(id);
  }

  // live adds an event the watch stream brought for runtime id.
  live(id: string, ev: RuntimeEvent): void {
    if (id === this.id && this.log.live(ev)) this.render();
  }

  private async fetch(id: string): Promise<void> {
    const n = ++this.fetches;
    try {
      const resp = await this.client.getRuntime({ id });
      if (n !== this.fetches) return;
      this.log.fetched(resp.events);
      this.list.dataset.error = "";
    } catch (err) {
      if (n !== this.fetches) return;
      // The live events still show; the history is what is missing.
      this.log.fetched([]);
      this.list.dataset.error = describe(err);
    }
    this.render();
  }

  private render(): void {
    const items = this.log.list.map((ev) => {
      const li = document.createElement("li");
      const st = stateOf(ev.state);
      li.dataset.state = st.label;
      if (ev.time) li.dataset.time = String(timestampMs(ev.time));
      li.append(
        span("t", ev.time ? fmtClock(timestampMs(ev.time)) : ""),
        span(`badge ${st.cls}`, st.label),
        span("msg", ev.message),
      );
      return li;
    });
    const err = this.list.dataset.error;
    if (err) {
      const li = document.createElement("li");
      li.className = "note";
      li.textContent = `The runtime's earlier events could not be fetched (${err}).`;
      items.unshift(li);
    }
    const atBottom = this.list.scrollHeight - this.list.scrollTop - this.list.clientHeight < 40;
    this.list.replaceChildren(...items);
    this.list.dataset.events = String(this.log.list.length);
    if (atBottom) this.list.scrollTop = this.list.scrollHeight;
  }
}
