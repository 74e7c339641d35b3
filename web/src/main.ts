// vmre dashboard: watches the engine's runtimes over gRPC-Web, tails the
// selected runtime's output, and stops or restarts runtimes with the API
// token. It talks to nothing but its own origin. This file wires the parts
// together: the API (api.ts), the runtime table (table.ts), the output
// panel (output.ts) and the token dialog (token.ts).
import "./style.css";
import { Code } from "@connectrpc/connect";
import { describe, isCode, keepWatching, newClient, type Conn } from "./api";
import { EngineClock } from "./clock";
import { byId, ErrorBanner } from "./dom";
import { fmtClock, stateOf } from "./format";
import type { WatchRuntimesResponse } from "./gen/vmre/v1/runtime_service_pb";
import { OutputPanel } from "./output";
import { RuntimeTable, type Action } from "./table";
import { TokenDialog } from "./token";

const client = newClient(location.origin);
const clock = new EngineClock();
const errors = new ErrorBanner();
const tokens = new TokenDialog();
const output = new OutputPanel(client);
const connEl = byId("conn");
const connText = byId("conn-text");
const serverTimeEl = byId("server-time");

// The page's state besides what its parts keep: the selected runtime and
// the instance id of the engine the watch stream last came from.
const page = { selected: null as string | null, engine: "" };

const table = new RuntimeTable(clock, {
  select(id) {
    const same = id === page.selected;
    page.selected = id;
    table.setSelected(id);
    output.show(table.get(id));
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
      table.replace(msg.kind.value.runtimes);
      output.show(table.get(page.selected));
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
        if (msg.event && !rt.attached) output.note(`${stateOf(rt.state).label}: ${msg.event.message}`, "event");
      }
      break;
    }
    case "removedId":
      table.remove(msg.kind.value);
      break;
  }
}

function onConn(state: Conn, err?: unknown) {
  connEl.dataset.conn = state;
  connText.textContent = state === "down" ? "reconnecting" : state;
  if (state === "live" && connEl.dataset.lost) {
    delete connEl.dataset.lost;
    errors.clear();
  } else if (state === "down") {
    connEl.dataset.lost = "true";
    errors.show(`Lost the engine's watch stream (${describe(err)}). Reconnecting…`);
  }
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
  table.tick();
  serverTimeEl.textContent = `engine clock ${fmtClock(clock.now()).slice(0, 8)}`;
}, 1000);

void keepWatching(client, { message: onMessage, conn: onConn });
