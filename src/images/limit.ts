/**
 * Admission control for decodes: at most `slots` images are decoded at once
 * in this process, and together they may hold at most `budgetBytes` of
 * estimated pixel memory. Twenty concurrent uploads therefore queue here
 * instead of holding twenty 60 MB pixel buffers. First come, first served:
 * a big image at the head of the queue is not starved by small ones behind it.
 */

interface Waiter {
  cost: number;
  admit: () => void;
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

  /** Runs `task` once a slot and `cost` bytes of the budget are free. */
  async run<T>(cost: number, task: () => Promise<T>): Promise<T> {
    await new Promise<void>((admit) => {
      this.queue.push({ cost, admit });
      this.drain();
    });
    try {
      return await task();
    } finally {
      this.running -= 1;
      this.used -= cost;
      this.drain();
    }
  }

  get stats(): { running: number; queued: number; usedBytes: number } {
    return { running: this.running, queued: this.queue.length, usedBytes: this.used };
  }

  private drain(): void {
    for (;;) {
      const next = this.queue[0];
      if (!next || this.running >= this.slots) return;
      // An image bigger than the whole budget still runs, but only alone.
      if (this.running > 0 && this.used + next.cost > this.budgetBytes) return;
      this.queue.shift();
      this.running += 1;
      this.used += next.cost;
      next.admit();
    }
  }
}
