// The engine's API as the page uses it: a gRPC-Web client of its own
// origin, readable errors, and the watch stream kept open across engine
// restarts.
import { Code, ConnectError, createClient, type Client } from "@connectrpc/connect";
import { createGrpcWebTransport } from "@connectrpc/connect-web";
import { RuntimeService, type WatchRuntimesResponse } from "./gen/vmre/v1/runtime_service_pb";

export type RuntimeClient = Client<typeof RuntimeService>;

// newClient returns a client of the RuntimeService served at baseUrl.
export function newClient(baseUrl: string): RuntimeClient {
  return createClient(RuntimeService, createGrpcWebTransport({ baseUrl }));
}

// describe is err as the page shows it: a Connect error's code as the API
// names it ("unauthenticated: ..."), or the error's message.
export function describe(err: unknown): string {
  if (err instanceof ConnectError) {
    return `${Code[err.code].replace(/([a-z])([A-Z])/g, "$1_$2").toLowerCase()}: ${err.rawMessage}`;
  }
  return err instanceof Error ? err.message : String(err);
}

export function isCode(err: unknown, code: Code): boolean {
  return err instanceof ConnectError && err.code === code;
}

export function sleep(ms: number, signal?: AbortSignal): Promise<void> {
  return new Promise((resolve) => {
    const t = setTimeout(done, ms);
    function done() {
      clearTimeout(t);
      signal?.removeEventListener("abort", done);
      resolve();
    }
    signal?.addEventListener("abort", done);
  });
}

// Backoff is the wait before a retry: from 500 ms doubling to 5 s, back to
// 500 ms once a stream works again.
export class Backoff {
  static readonly MIN = 500;
  static readonly MAX = 5000;
  private ms = Backoff.MIN;

  // next returns the wait before the next retry and doubles the one after.
  next(): number {
    const ms = this.ms;
    this.ms = Math.min(this.ms * 2, Backoff.MAX);
    return ms;
  }

  reset(): void {
    this.ms = Backoff.MIN;
  }
}

// Conn is the watch stream's state: "live" once the stream has brought its
// first snapshot (the page shows the engine's current picture), "down"
// between a failure and the next snapshot.
export type Conn = "connecting" | "live" | "down";

// WatchHandlers receive what keepWatching sees.
export interface WatchHandlers {
  // message is each message; first is true for a stream's first one.
  message(msg: WatchRuntimesResponse, first: boolean): void;
  conn(state: Conn, err?: unknown): void;
}

// keepWatching watches the engine's runtimes forever, reconnecting with
// backoff whenever the stream fails or ends. It never returns.
export async function keepWatching(client: RuntimeClient, on: WatchHandlers): Promise<never> {
  const backoff = new Backoff();
  for (;;) {
    try {
      on.conn("connecting");
      let first = true;
      for await (const msg of client.watchRuntimes({})) {
        if (first) {
          backoff.reset();
          on.conn("live");
        }
        on.message(msg, first);
        first = false;
      }
      throw new Error("watch stream ended");
    } catch (err) {
      on.conn("down", err);
      await sleep(backoff.next());
    }
  }
}
