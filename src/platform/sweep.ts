/**
 * A piece of housekeeping every serving or job-running process repeats on a
 * timer (unpaid orders let go, ended sessions and old job rows pruned). One
 * run at a time per process: a run asked for while one is under way waits
 * for that one. Runs in several processes at once must be harmless, which
 * each sweep's own queries see to (a delete of what another already deleted
 * deletes nothing).
 */
import { setImmediate } from 'node:timers/promises';
import type { FastifyInstance } from 'fastify';
import type { Logger } from 'pino';

/**
 * The first run comes this soon after the start, not a whole interval later:
 * a process restarted more often than its sweep's interval would otherwise never sweep.
 */
const FIRST_RUN_MS = 60_000;

/** The interval of the housekeeping sweeps that prune what stopped mattering (docs/operations.md). */
export const HOURLY_MS = 60 * 60_000;

/**
 * Calls `deletePage` (one bounded delete, resolving with how many rows it
 * took) until a page deletes nothing; resolves with the total. A long backlog
 * goes in short statements, never one that loads or locks it all, and the
 * event loop gets a turn between pages: on SQLite a statement runs on the
 * event loop and its promise resolves without waiting for anything, so a
 * backlog of 200000 rows (the first sweep after an upgrade, or after
 * JOB_RETENTION_DAYS is turned on) would otherwise hold every request until
 * its last page.
 */
export async function deleteInPages(deletePage: () => Promise<number>): Promise<number> {
  let deleted = 0;
  for (;;) {
    const page = await deletePage();
    if (page === 0) return deleted;
    deleted += page;
    await setImmediate();
  }
}

export class PeriodicSweep {
  private timer: NodeJS.Timeout | undefined;
  private first: NodeJS.Timeout | undefined;
  private running: Promise<number> | undefined;

  /**
   * @param what for the log line of a failed run ("pruning ended sessions")
   * @param once one run; resolves with how many things it handled
   */
  constructor(
    private readonly log: Logger,
    private readonly what: string,
    private readonly intervalMs: number,
    private readonly once: () => Promise<number>,
  ) {}

  /** One run now, or the one under way. */
  run(): Promise<number> {
    this.running ??= this.once().finally(() => {
      this.running = undefined;
    });
    return this.running;
  }

  /**
   * Runs every intervalMs until `stop`, and once a minute after the start
   * when the interval is longer; a failed run is logged and the next one tries again.
   */
  start(): void {
    if (this.timer) return;
    const tick = (): void => {
      this.run().catch((err: unknown) => this.log.error({ err }, `${this.what} failed`));
    };
    this.timer = setInterval(tick, this.intervalMs);
    if (this.intervalMs > FIRST_RUN_MS) this.first = setTimeout(tick, FIRST_RUN_MS);
    // Never what keeps a process alive: serve and worker have their own reasons to run.
    this.timer.unref();
    this.first?.unref();
  }

  /** Stops the timers and waits for a run under way, so the database is not closed under it. */
  async stop(): Promise<void> {
    clearInterval(this.timer);
    clearTimeout(this.first);
    this.timer = undefined;
    this.first = undefined;
    await this.running?.catch(() => undefined);
  }
}

/** Starts `sweep` for as long as `app` is open: the app's close stops it and waits for a run under way. */
export function runWhileOpen(app: FastifyInstance, sweep: Pick<PeriodicSweep, 'start' | 'stop'>): void {
  sweep.start();
  app.addHook('onClose', () => sweep.stop());
}
