// Pure formatting of what the engine reports: no DOM, no clock of its own,
// so node's test runner checks it without a browser.
import { timestampMs } from "@bufbuild/protobuf/wkt";
import { RuntimeHealth, RuntimeState, type ExitStatus, type Runtime } from "./gen/vmre/v1/runtime_service_pb";

// State is how the page names and colours a runtime state.
export interface State {
  label: string;
  cls: string;
}

const STATES: Record<number, State> = {
  [RuntimeState.UNSPECIFIED]: { label: "unknown", cls: "unknown" },
  [RuntimeState.STARTING]: { label: "starting", cls: "starting" },
  [RuntimeState.RUNNING]: { label: "running", cls: "running" },
  [RuntimeState.STOPPING]: { label: "stopping", cls: "stopping" },
  [RuntimeState.EXITED]: { label: "exited", cls: "exited" },
  [RuntimeState.FAILED]: { label: "failed", cls: "failed" },
  [RuntimeState.ATTACHED]: { label: "attached", cls: "attached" },
  [RuntimeState.BACKOFF]: { label: "backoff", cls: "backoff" },
  [RuntimeState.UNHEALTHY]: { label: "unhealthy", cls: "unhealthy" },
  [RuntimeState.LOST]: { label: "lost", cls: "lost" },
};

// STATE_ORDER is the order in which the header counts states.
export const STATE_ORDER = ["running", "attached", "unhealthy", "starting", "backoff", "stopping", "failed", "lost", "exited"];

// isLive reports whether the engine has (or is about to have) a process
// for a runtime in state s that a stop would end: a stop also cancels a
// pending restart.
export function isLive(s: RuntimeState): boolean {
  return s === RuntimeState.RUNNING || s === RuntimeState.STARTING || s === RuntimeState.UNHEALTHY || s === RuntimeState.BACKOFF;
}

// stateOf names s; a state this page does not know yet is "unknown".
export function stateOf(s: RuntimeState): State {
  return STATES[s] ?? STATES[RuntimeState.UNSPECIFIED];
}

// fmtDuration says how long ms is in its two largest units ("3m 07s");
// negative or non-finite durations are 0s.
export function fmtDuration(ms: number): string {
  if (!Number.isFinite(ms) || ms < 0) ms = 0;
  const s = Math.floor(ms / 1000);
  if (s < 60) return `${s}s`;
  const m = Math.floor(s / 60);
  if (m < 60) return `${m}m ${String(s % 60).padStart(2, "0")}s`;
  const h = Math.floor(m / 60);
  if (h < 24) return `${h}h ${String(m % 60).padStart(2, "0")}m`;
  return `${Math.floor(h / 24)}d ${String(h % 24).padStart(2, "0")}h`;
}

// fmtHandshake is the runtime's handshake duration, or "—" without one.
export function fmtHandshake(rt: Runtime): string {
  if (!rt.handshakeDuration) return "—";
  // durationMs rounds to whole milliseconds; a handshake can take less.
  const d = rt.handshakeDuration;
  const ms = Number(d.seconds) * 1000 + d.nanos / 1e6;
  return ms < 1000 ? `${ms.toFixed(ms < 10 ? 1 : 0)} ms` : `${(ms / 1000).toFixed(2)} s`;
}

// fmtExit says how a process ended, or "—" while it runs.
export function fmtExit(ex: ExitStatus | undefined): string {
  if (!ex) return "—";
  return ex.signal ? `signal ${ex.signal}` : `status ${ex.code}`;
}

// uptimeMs is how long rt's process ran or has run by nowMs (the engine's
// clock), or null if it never started.
export function uptimeMs(rt: Runtime, nowMs: number): number | null {
  if (!rt.startedAt) return null;
  const end = rt.exitedAt ? timestampMs(rt.exitedAt) : nowMs;
  return end - timestampMs(rt.startedAt);
}

// fmtClock is ms since the epoch as local HH:MM:SS.mmm.
export function fmtClock(ms: number): string {
  const d = new Date(ms);
  const p = (n: number, w = 2) => String(n).padStart(w, "0");
  return `${p(d.getHours())}:${p(d.getMinutes())}:${p(d.getSeconds())}.${p(d.getMilliseconds(), 3)}`;
}

// fmtNextAttempt says when a runtime in backoff is relaunched, from the
// engine's clock nowMs: "retry in 4s", or "retrying" once that time passed.
export function fmtNextAttempt(rt: Runtime, nowMs: number): string {
  if (rt.state !== RuntimeState.BACKOFF || !rt.nextAttemptAt) return "";
  const ms = timestampMs(rt.nextAttemptAt) - nowMs;
  return ms > 0 ? `retry in ${fmtDuration(ms + 999)}` : "retrying";
}

// fmtBytes is n bytes in binary units with three significant digits.
export function fmtBytes(n: number): string {
  if (!Number.isFinite(n) || n < 0) n = 0;
  const units = ["B", "KiB", "MiB", "GiB", "TiB"];
  let i = 0;
  while (n >= 1024 && i < units.length - 1) {
    n /= 1024;
    i++;
  }
  return i === 0 ? `${n} B` : `${n.toPrecision(3)} ${units[i]}`;
}

// fmtPercent is a CPU share in percent of one core.
export function fmtPercent(p: number): string {
  if (!Number.isFinite(p) || p < 0) p = 0;
  return `${p < 10 ? p.toFixed(1) : Math.round(p)}%`;
}

// fmtStateNote is the line under a runtime's state: when a runtime in
// backoff is relaunched, or that its liveness probe is failing.
export function fmtStateNote(rt: Runtime, nowMs: number): string {
  const next = fmtNextAttempt(rt, nowMs);
  if (next) return next;
  if (rt.health === RuntimeHealth.FAILING && (rt.state === RuntimeState.RUNNING || rt.state === RuntimeState.UNHEALTHY || rt.state === RuntimeState.ATTACHED)) {
    return "health check failing";
  }
  return "";
}
