// A runtime's events as the page knows them: the history GetRuntime
// returns, then the events the watch stream brings. Pure: node's test
// runner checks it without a browser.
import type { RuntimeEvent } from "./gen/vmre/v1/runtime_service_pb";

// MAX_EVENTS bounds what the page keeps of one runtime.
export const MAX_EVENTS = 200;

// EventLog merges a runtime's fetched history with the live events. A live
// event that arrives while the history is being fetched may or may not be
// in it; it is kept aside and added after the history unless the history
// already has it. The engine never sends two events with the same time,
// state and message for one runtime.
export class EventLog {
  private events: RuntimeEvent[] = [];
  private early: RuntimeEvent[] | null = null;

  get list(): readonly RuntimeEvent[] {
    return this.events;
  }

  // reset forgets everything and waits for a history: live events are
  // held until fetched.
  reset(): void {
    this.events = [];
    this.early = [];
  }

  // fetched sets the history (oldest first), then adds the live events
  // held while fetching that it lacks.
  fetched(history: readonly RuntimeEvent[]): void {
    const seen = new Set(history.map(keyOf));
    this.events = [...history, ...(this.early ?? []).filter((e) => !seen.has(keyOf(e)))];
    this.early = null;
    this.trim();
  }

  // live adds an event the watch stream brought. It reports whether the
  // list changed (false while a history is awaited or for a duplicate).
  live(ev: RuntimeEvent): boolean {
    if (this.early !== null) {
      this.early.push(ev);
      return false;
    }
    const k = keyOf(ev);
    if (this.events.some((e) => keyOf(e) === k)) return false;
    this.events.push(ev);
    this.trim();
    return true;
  }

  private trim(): void {
    if (this.events.length > MAX_EVENTS) this.events = this.events.slice(-MAX_EVENTS);
  }
}

function keyOf(e: RuntimeEvent): string {
  return `${e.time?.seconds ?? ""}.${e.time?.nanos ?? ""}|${e.state}|${e.message}`;
}
