// EngineClock is the engine's clock as the page estimates it from the
// server_time of watch messages, so uptimes do not depend on the browser's
// clock being right.
import { timestampMs, type Timestamp } from "@bufbuild/protobuf/wkt";

export class EngineClock {
  private offsetMs = 0; // engine clock minus ours

  // update takes the engine's time when it sent a message.
  update(serverTime: Timestamp | undefined, localNowMs = Date.now()): void {
    if (serverTime) this.offsetMs = timestampMs(serverTime) - localNowMs;
  }

  // now is the engine's clock now, in ms since the epoch.
  now(localNowMs = Date.now()): number {
    return localNowMs + this.offsetMs;
  }
}
