// Recent resource samples per runtime, for the sparklines. Pure: node's
// test runner checks it without a browser.
import { timestampMs } from "@bufbuild/protobuf/wkt";
import type { ResourceUsage } from "./gen/vmre/v1/runtime_service_pb";

// WINDOW_MS is how far back a sparkline reaches.
export const WINDOW_MS = 5 * 60_000;

export interface Sample {
  t: number; // engine clock, ms since the epoch
  cpu: number; // percent of one core
  rss: number; // bytes
}

// UsageHistory keeps each runtime's samples of the last WINDOW_MS. The
// watch stream may bring the same sample again (a snapshot repeats the
// last one); a sample not newer than the last kept is ignored.
export class UsageHistory {
  private readonly byId = new Map<string, Sample[]>();

  add(id: string, u: ResourceUsage | undefined): void {
    if (!u?.time) return;
    const t = timestampMs(u.time);
    let samples = this.byId.get(id);
    if (!samples) this.byId.set(id, (samples = []));
    if (samples.length > 0 && t <= samples[samples.length - 1].t) return;
    samples.push({ t, cpu: u.cpuPercent, rss: Number(u.rssBytes) });
    const from = samples.findIndex((s) => s.t >= t - WINDOW_MS);
    if (from > 0) samples.splice(0, from);
  }

  samples(id: string): readonly Sample[] {
    return this.byId.get(id) ?? [];
  }

  // keep forgets every runtime not in ids.
  keep(ids: Iterable<string>): void {
    const live = new Set(ids);
    for (const id of this.byId.keys()) if (!live.has(id)) this.byId.delete(id);
  }

  clear(): void {
    this.byId.clear();
  }
}

// sparkPoints is an SVG polyline's points for values over a width x height
// box: oldest at the left, newest at the right edge, scaled so that the
// largest value (or floor, if larger) touches the top. Fewer than two
// values draw nothing.
export function sparkPoints(values: readonly number[], width: number, height: number, floor = 0): string {
  if (values.length < 2) return "";
  const top = Math.max(floor, ...values);
  const dx = width / (values.length - 1);
  return values
    .map((v, i) => {
      const y = top > 0 ? height - (Math.max(v, 0) / top) * height : height;
      return `${round(i * dx)},${round(y)}`;
    })
    .join(" ");
}

function round(n: number): number {
  return Math.round(n * 10) / 10;
}
