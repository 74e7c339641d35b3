// What the output panel shows of one line the engine sent: the engine has
// parsed it (level, message, fields, logger, the plugin's own time), so
// nothing here parses the text again. Pure: node's test runner checks it
// without a browser.
import { timestampDate } from "@bufbuild/protobuf/wkt";
import { LogLevel, OutputStream, type OutputLine } from "./gen/vmre/v1/runtime_service_pb";

// LEVELS are the levels a line can have, lowest first, as the page names
// them; each has its LogLevel.
export const LEVELS = ["trace", "debug", "info", "warn", "error", "fatal", "panic"] as const;
export type Level = (typeof LEVELS)[number];

const BY_ENUM: Record<number, Level> = {
  [LogLevel.TRACE]: "trace",
  [LogLevel.DEBUG]: "debug",
  [LogLevel.INFO]: "info",
  [LogLevel.WARN]: "warn",
  [LogLevel.ERROR]: "error",
  [LogLevel.FATAL]: "fatal",
  [LogLevel.PANIC]: "panic",
};

// logLevelOf is the LogLevel the page calls level.
export function logLevelOf(level: Level): LogLevel {
  return Number(Object.entries(BY_ENUM).find(([, l]) => l === level)![0]) as LogLevel;
}

// atLeast reports whether level is min or above.
export function atLeast(level: Level, min: Level): boolean {
  return LEVELS.indexOf(level) >= LEVELS.indexOf(min);
}

// LineView is one output line as shown.
export interface LineView {
  level: Level;
  // The plugin's own level word when it maps to none of LEVELS.
  pluginLevel: string;
  message: string;
  fields: [string, string][];
  logger: string;
  stderr: boolean;
  // The goroutine dump that followed a panic, or "".
  dump: string;
  // The details the line's tooltip gives: the plugin's own time, logger,
  // caller and format when it has them, then stream, pid and seq.
  title: string;
}

// viewOf shows l as the engine parsed it. A line the engine did not parse
// (no level and no message: an engine that predates the parsed form) shows
// its text at info, or at the level word the engine took from it.
export function viewOf(l: OutputLine): LineView {
  const stderr = l.stream === OutputStream.STDERR;
  let level: Level = BY_ENUM[l.logLevel] ?? legacyLevel(l.level);
  if (l.panic) level = "panic";
  const parsed = l.logLevel !== LogLevel.UNSPECIFIED || l.message !== "";
  const fields = Object.entries(l.fields ?? {}).map(([k, v]): [string, string] => [k, typeof v === "string" ? v : JSON.stringify(v)]);
  const details: string[] = [];
  if (l.pluginTime) details.push(`plugin time ${timestampDate(l.pluginTime).toISOString()}`);
  if (l.logger) details.push(`logger ${l.logger}`);
  if (l.caller) details.push(`caller ${l.caller}`);
  if (l.format) details.push(`format ${l.format}`);
  details.push(`${stderr ? "stderr" : "stdout"} · pid ${l.pid} · #${l.seq}${l.partial ? " · partial" : ""}`);
  return {
    level,
    pluginLevel: l.pluginLevel,
    message: parsed ? l.message : l.text,
    fields,
    logger: l.logger,
    stderr,
    dump: l.dump,
    title: details.join(" · "),
  };
}

// legacyLevel maps the level word of an engine without LogLevel.
function legacyLevel(word: string): Level {
  const w = word.toLowerCase();
  if (w === "warning") return "warn";
  return (LEVELS as readonly string[]).includes(w) ? (w as Level) : "info";
}

// textOf is v as one line of a downloaded log: the engine's read time,
// level, logger, message and fields.
export function textOf(v: LineView, readAt: Date | undefined): string {
  const parts = [readAt ? readAt.toISOString() : "-", v.level.toUpperCase()];
  if (v.logger) parts.push(`<${v.logger}>`);
  if (v.message) parts.push(v.message);
  for (const [k, val] of v.fields) parts.push(`${k}=${/[\s"=]/.test(val) || val === "" ? JSON.stringify(val) : val}`);
  let s = parts.join(" ");
  if (v.dump) s += `\n${v.dump}`;
  return s;
}
