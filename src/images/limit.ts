/**
 * Admission control for decodes: the images decoded at once in this process
 * take at most `slots` cores between them, and together they may hold at
 * most `budgetBytes` of estimated pixel memory. Twenty concurrent uploads
 * therefore queue here instead of holding twenty 60 MB pixel buffers.
 *
 * An image takes a whole core, or half of one when it is small (the caller
 * says: `run`'s `share`). Two small renders sharing a core finish together
 * instead of one after the other, so at a few uploads per core each takes
 * its own work's time rather than that plus a whole render's wait: the
 * upload bench's c=4 p99 / p50 went from 1.37-1.59 to 1.24-1.42 at the same
 * rate (docs/performance.md, sixteenth round). A large image keeps a
 * core to itself: two of them on one core would hold twice the memory for
 * no more photos a second.
 *
 * First come, first served, with bounded passing: when the image at the head
 * of the queue does not fit beside those running, a later one that does fit
 * may start instead, so a core does not idle while a large progressive JPEG
 * waits for memory (measured: the corpus's 17 MP progressive photo, which
 * needs 174 MB, left one core idle for a third of a batch). Each waiting
 * image lets at most MAX_PASSES later ones start before it, so a big upload
 * is never starved by a stream of small ones. The budget holds either way.
 *
 * A running image may give back part of its share early (Lease.shrinkTo):
 * a progressive JPEG needs its whole-image coefficients only while it
 * decodes, and the next image can start as soon as they are freed.
 */

/** How many later images may start before one that is waiting for memory. */
export const MAX_PASSES = 2;

/** A running task's hold on the budget. */
export interface Lease {
  /** Gives back what the task no longer needs: its hold becomes `cost` bytes when that is less than it holds now. */
  shrinkTo(cost: number): void;
}

interface Waiter {
  cost: number;
  /** The part of a core it takes: 1, or 0.5 for a small image. */
  share: number;
  admit: () => void;
  /** Later waiters admitted before this one. */
  passed: number;
}

export class DecodeLimiter {
  private running = 0;
  /** The cores the running tasks take, summed. */
  private taken = 0;
  private used = 0;
  private readonly queue: Waiter[] = [];

  constructor(
    private slots: number,
    private budgetBytes: number,
  ) {}

  configure(slots: number, budgetBytes: number): void {
    this.slots = Math.max(1, Math.floor(slots));
    this.budgetBytes = Math.max(1, budgetBytes);
    this.drain();
  }

  /**
   * Runs `task` once `share` of a core (1, or 0.5 for a small image) and
   * `cost` bytes of the budget are free. The task may give part of its
   * memory back early (Lease.shrinkTo), when the part of its work that needed
   * it is over; the rest goes back when it ends.
   */
  async run<T>(cost: number, task: (lease: Lease) => Promise<T>, share: 1 | 0.5 = 1): Promise<T> {
    await new Promise<void>((admit) => {
      this.queue.push({ cost, share, admit, passed: 0 });
      this.drain();
    });
    let held = cost;
    let ended = false;
    const lease: Lease = {
      shrinkTo: (smaller) => {
        if (ended || !(smaller >= 0 && smaller < held)) return;
        this.used -= held - smaller;
        held = smaller;
        this.drain();
      },
    };
    try {
      return await task(lease);
    } finally {
      ended = true;
      this.running -= 1;
      this.taken -= share;
      this.used -= held;
      this.drain();
    }
  }

  get stats(): { running: number; queued: number; usedBytes: number } {
    return { running: this.running, queued: this.queue.length, usedBytes: this.used };
  }

  private fits(w: Waiter): boolean {
    // An image bigger than the whole budget still runs, but only alone. Shares are halves and
    // wholes: their sums are exact in binary, so the comparison with slots is too.
    return this.running === 0 || (this.taken + w.share <= this.slots && this.used + w.cost <= this.budgetBytes);
  }

  private drain(): void {
    while (this.taken < this.slots) {
      const i = this.nextAdmissible();
      if (i < 0) return;
      const [next] = this.queue.splice(i, 1) as [Waiter];
      for (let j = 0; j < i; j++) (this.queue[j] as Waiter).passed += 1;
      this.running += 1;
      this.taken += next.share;
      this.used += next.cost;
      next.admit();
    }
  }

  /** The first waiter that fits, unless it would pass one that has been passed MAX_PASSES times; -1 when none may start. */
  private nextAdmissible(): number {
    for (let i = 0; i < this.queue.length; i++) {
      const w = this.queue[i] as Waiter;
      if (this.fits(w)) return i;
      if (w.passed >= MAX_PASSES) return -1;
    }
    return -1;
  }
}
