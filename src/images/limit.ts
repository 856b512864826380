/**
 * Admission control for decodes: at most `slots` images are decoded at once
 * in this process, and together they may hold at most `budgetBytes` of
 * estimated pixel memory. Twenty concurrent uploads therefore queue here
 * instead of holding twenty 60 MB pixel buffers.
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
  admit: () => void;
  /** Later waiters admitted before this one. */
  passed: number;
}

export class DecodeLimiter {
  private running = 0;
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
   * Runs `task` once a slot and `cost` bytes of the budget are free. The task
   * may give part of its share back early (Lease.shrinkTo), when the part of
   * its work that needed it is over; the rest goes back when it ends.
   */
  async run<T>(cost: number, task: (lease: Lease) => Promise<T>): Promise<T> {
    await new Promise<void>((admit) => {
      this.queue.push({ cost, admit, passed: 0 });
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
      this.used -= held;
      this.drain();
    }
  }

  get stats(): { running: number; queued: number; usedBytes: number } {
    return { running: this.running, queued: this.queue.length, usedBytes: this.used };
  }

  private fits(w: Waiter): boolean {
    // An image bigger than the whole budget still runs, but only alone.
    return this.running === 0 || this.used + w.cost <= this.budgetBytes;
  }

  private drain(): void {
    while (this.running < this.slots) {
      const i = this.nextAdmissible();
      if (i < 0) return;
      const [next] = this.queue.splice(i, 1) as [Waiter];
      for (let j = 0; j < i; j++) (this.queue[j] as Waiter).passed += 1;
      this.running += 1;
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
