// What the output panel shows of one line the engine sent. Pure: node's
// test runner checks it without a browser.
import { OutputStream, type OutputLine } from "./gen/vmre/v1/runtime_service_pb";

// LineView is one output line as shown: its level word, message, fields
// and the details its tooltip gives.
export interface LineView {
  level: string;
  message: string;
  fields: [string, string][];
  stderr: boolean;
  title: string;
}

// viewOf shows l. A line without a level is info, or warn on stderr; a
// JSON object's message and the rest of its keys (as key=value) are shown
// apart.
export function viewOf(l: OutputLine): LineView {
  const parsed = parseJSON(l.text);
  const stderr = l.stream === OutputStream.STDERR;
  let message = l.text;
  let fields: [string, string][] = [];
  if (parsed) {
    const { level: _l, time: _t, message: m1, msg: m2, ...rest } = parsed;
    message = typeof m1 === "string" ? m1 : typeof m2 === "string" ? m2 : "";
    fields = Object.entries(rest).map(([k, v]) => [k, typeof v === "string" ? v : JSON.stringify(v)]);
  }
  let level = l.panic ? "panic" : (l.level || (typeof parsed?.level === "string" ? parsed.level : "")).toLowerCase();
  if (!level) level = stderr ? "warn" : "info";
  return {
    level,
    message,
    fields,
    stderr,
    title: `${stderr ? "stderr" : "stdout"} · pid ${l.pid} · #${l.seq}${l.partial ? " · partial" : ""}`,
  };
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
