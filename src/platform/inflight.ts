/**
 * Work a process must let end before it exits: route handlers (an upload
 * rendering, committing or rolling back) and job handlers (a pipeline run
 * removing its workspace). Their clients or their jobs may already have been
 * let go; what is tracked here is the code that cleans up after itself, so
 * that a stop leaves no temp file and no blob without its row.
 */

/** Waits for `p` at most `ms`, leaving no timer behind to hold the process open. */
export async function within(p: Promise<unknown>, ms: number): Promise<void> {
  let timer: NodeJS.Timeout | undefined;
  await Promise.race([p.then(() => undefined, () => undefined), new Promise((r) => (timer = setTimeout(r, ms)))]);
  clearTimeout(timer);
}

export class InFlight {
  private readonly pending = new Set<Promise<void>>();

  /** Tracks `work` until it settles and returns it as it is (a value that is not a promise is not tracked). */
  track<T>(work: T): T {
    if (work instanceof Promise) {
      const forget = (): void => {
        this.pending.delete(settled);
      };
      const settled: Promise<void> = work.then(forget, forget);
      this.pending.add(settled);
    }
    return work;
  }

  get size(): number {
    return this.pending.size;
  }

  /** Resolves once everything tracked now has settled, or after `ms`; true when nothing is left. */
  async settled(ms: number): Promise<boolean> {
    if (this.pending.size > 0) await within(Promise.all([...this.pending]), ms);
    return this.pending.size === 0;
  }
}
