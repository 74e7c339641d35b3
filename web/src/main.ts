// vmre dashboard: watches the engine's runtimes over gRPC-Web, tails the
// selected runtime's output, and stops or restarts runtimes with the API
// token. It talks to nothing but its own origin. This file wires the parts
// together: the API (api.ts), the runtime table (table.ts), the event
// panel (events.ts), the output panel (output.ts) and the token dialog
// (token.ts).
import "./style.css";
import { Code } from "@connectrpc/connect";
import { describe, isCode, keepWatching, newClient, type Conn } from "./api";
import { EngineClock } from "./clock";
import { byId, ErrorBanner } from "./dom";
import { timestampMs } from "@bufbuild/protobuf/wkt";
import { EventPanel } from "./events";
import { fmtClock, fmtDuration } from "./format";
import type { WatchRuntimesResponse } from "./gen/vmre/v1/runtime_service_pb";
import { OutputPanel } from "./output";
import { RuntimeTable, type Action } from "./table";
import { TokenDialog } from "./token";

const client = newClient(location.origin);
const clock = new EngineClock();
const errors = new ErrorBanner();
const tokens = new TokenDialog();
const output = new OutputPanel(client);
const events = new EventPanel(client);
const connEl = byId("conn");
const connText = byId("conn-text");
const serverTimeEl = byId("server-time");
const engineEl = byId("engine-info");

// The page's state besides what its parts keep: the selected runtime, the
// engine the watch stream last came from (instance id, start, version),
// whether the stream is live, and since when it is down.
const page = {
  selected: null as string | null,
  engine: "",
  engineStartedMs: null as number | null,
  engineVersion: "",
  conn: "connecting" as Conn,
  downSince: null as number | null,
};

const table = new RuntimeTable(clock, {
  select(id) {
    const same = id === page.selected;
    page.selected = id;
    table.setSelected(id);
    output.show(table.get(id));
    events.show(table.get(id));
    // Selecting the shown runtime again tails it again if its tail ended.
    if (same && !output.tailing) output.resume();
  },
  act: (kind, id) => void act(kind, id),
});

function onMessage(msg: WatchRuntimesResponse, first: boolean) {
  clock.update(msg.serverTime);
  const newEngine = msg.engineInstanceId !== page.engine;
  page.engine = msg.engineInstanceId;
  switch (msg.kind.case) {
    case "snapshot": {
      const snap = msg.kind.value;
      page.engineStartedMs = snap.engineStartedAt ? timestampMs(snap.engineStartedAt) : null;
      page.engineVersion = snap.engineVersion;
      renderEngine();
      const before = page.selected;
      table.replace(snap.runtimes, newEngine);
      output.show(table.get(page.selected));
      // A new stream may have missed events of the runtime shown while the
      // page was away (a newly selected one was just fetched).
      events.show(table.get(page.selected), first && before !== null && before === page.selected);
      // A new watch stream may come from a new engine, or follow an outage
      // that ended the tail stream: tail the selected runtime again then.
      // Not on a later snapshot, a resync of the same stream after the
      // page fell behind: the tail stream goes on.
      if (first && page.selected !== null && (newEngine || !output.tailing)) output.resume();
      document.documentElement.dataset.ready = "true";
      break;
    }
    case "runtime": {
      const rt = msg.kind.value;
      table.put(rt);
      if (rt.id === page.selected) {
        output.show(rt);
        events.show(rt);
      }
      if (msg.event) events.live(rt.id, msg.event);
      break;
    }
    case "removedId":
      table.remove(msg.kind.value);
      break;
  }
}

// onConn shows the watch stream's state. While the engine is unreachable
// the page says so, its clocks stop and the rows grey out (html[data-conn]);
// the stream reconnects by itself.
function onConn(state: Conn, err?: unknown) {
  const was = page.conn;
  page.conn = state;
  // "connecting" after a failure is still down for the user.
  const shown = state === "connecting" && was === "down" ? "down" : state;
  connEl.dataset.conn = shown;
  document.documentElement.dataset.conn = shown;
  connText.textContent = shown === "down" ? "engine unreachable" : shown;
  if (state === "live") {
    page.downSince = null;
    if (connEl.dataset.lost) {
      delete connEl.dataset.lost;
      errors.clear();
    }
  } else if (state === "down") {
    page.downSince ??= clock.now();
    connEl.dataset.lost = "true";
    errors.show(`The engine is unreachable since ${fmtClock(page.downSince).slice(0, 8)} (${describe(err)}). ` +
      "The page shows what it last saw and reconnects by itself.");
  }
}

// renderEngine shows the engine's version and uptime in the header; the
// uptime stops while the engine is unreachable.
function renderEngine() {
  const parts = [page.engineVersion ? `vmre ${page.engineVersion}` : "vmre"];
  if (page.engineStartedMs !== null) {
    const end = page.downSince ?? clock.now();
    parts.push(`up ${fmtDuration(end - page.engineStartedMs)}`);
  }
  engineEl.textContent = parts.join(" · ");
  engineEl.title = page.engine ? `engine instance ${page.engine}` : "";
}

async function act(kind: Action, id: string) {
  const rt = table.get(id);
  const label = rt ? `${rt.name} (${id})` : id;
  let token = tokens.stored();
  if (token === null) {
    token = await tokens.ask(`To ${kind} ${label}, paste the engine's API token. vmre run prints the path of the file that holds it.`);
    if (token === null) return;
  }
  table.setBusy(id, true);
  const headers = { Authorization: `Bearer ${token}` };
  try {
    // The answer's runtime is not shown: only the watch stream changes
    // rows. The answer can arrive after the stream has shown a newer state
    // or the runtime's removal, and would put the older state back.
    if (kind === "stop") await client.stopRuntime({ id }, { headers });
    else await client.restartRuntime({ id }, { headers });
    errors.clear();
  } catch (err) {
    if (isCode(err, Code.Unauthenticated)) {
      tokens.forget();
      errors.show(`${kind} ${label} refused: the token was not accepted (${describe(err)}).`);
    } else {
      errors.show(`${kind} ${label} failed: ${describe(err)}`);
    }
  } finally {
    table.setBusy(id, false);
  }
}

setInterval(() => {
  // The engine's clock is known only while the watch stream is live.
  if (page.conn !== "live") return;
  table.tick();
  renderEngine();
  serverTimeEl.textContent = `engine clock ${fmtClock(clock.now()).slice(0, 8)}`;
}, 1000);

void keepWatching(client, { message: onMessage, conn: onConn });
