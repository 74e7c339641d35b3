// Which output lines a tail stream adds to those already shown. Lines are
// numbered per runtime from 1 (OutputLine.seq) by one engine, across the
// runtime's restarts; another engine (the next run of vmre) numbers from 1
// again and has another instance id, which every tail message carries. So
// the instance id and the seq of the line shown last are all it takes to
// tell old lines, new ones and lines lost in between.

// Resumed says how a new tail stream relates to the lines shown before it:
// nothing was shown ("first"), it comes from the same engine and continues
// them ("same-engine"), or from another engine, whose lines are all new
// ("new-engine").
export type Resumed = "first" | "same-engine" | "new-engine";

// LineCursor remembers the line shown last. Not safe to share between
// panels; one per output panel.
export class LineCursor {
  private instance: string | null = null;
  private seq = 0n;
  private resuming = false;

  // reset forgets the lines shown: the next stream's lines all show.
  reset(): void {
    this.instance = null;
    this.seq = 0n;
    this.resuming = false;
  }

  // begin is told the instance id of a new tail stream's first message and
  // says how that stream relates to what was shown. A stream of the same
  // engine begins with lines that may have been shown already; the first
  // line after them tells whether some were lost (see take).
  begin(instance: string): Resumed {
    if (this.instance === null) {
      this.instance = instance;
      return "first";
    }
    if (instance !== this.instance) {
      this.instance = instance;
      this.seq = 0n;
      this.resuming = false;
      return "new-engine";
    }
    this.resuming = true;
    return "same-engine";
  }

  // take returns the lines of seqs to show (those not shown before) and,
  // on a stream that resumes one of the same engine, how many lines were
  // lost between the last shown and the first of these: they are counted
  // once, at the first new line, whichever message of the stream it is in.
  take<L extends { seq: bigint }>(lines: readonly L[]): { show: L[]; skipped: bigint } {
    const show: L[] = [];
    let skipped = 0n;
    for (const l of lines) {
      if (l.seq <= this.seq) continue;
      if (this.resuming) {
        this.resuming = false;
        if (this.seq > 0n && l.seq > this.seq + 1n) skipped = l.seq - this.seq - 1n;
      }
      this.seq = l.seq;
      show.push(l);
    }
    return { show, skipped };
  }
}
