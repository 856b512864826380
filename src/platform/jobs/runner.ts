/** What both runners share: the registry, reads of the jobs table, cancel and waitFor. */
import type { Kysely, Transaction } from 'kysely';
import type { Logger } from 'pino';
import type { Clock } from '../../clock.js';
import type { Db } from '../db/index.js';
import type { Database } from '../db/schema.js';
import { InFlight, within } from '../inflight.js';
import { deleteInPages } from '../sweep.js';
import { abortFor } from './execute.js';
import { HandlerRegistry } from './registry.js';
import { isFinished, JobStore, toJob, type JobRow } from './store.js';
import type { EnqueueOptions, HandlerOptions, Job, JobHandler, JobPage, JobRunner, ListQuery } from './types.js';

/** `p`, or a rejection with `message` once `ms` have passed; leaves no timer behind. */
export async function bounded<T>(p: Promise<T>, ms: number, message: string): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  try {
    return await Promise.race([p, new Promise<never>((_, reject) => (timer = setTimeout(() => reject(new Error(message)), ms)))]);
  } finally {
    clearTimeout(timer);
  }
}

/** Job rows deleted per statement by pruneFinished. */
const PRUNE_PAGE = 500;

/** How long a health check waits for the runner's backend by default: well under the health route's own limit. */
export const HEALTH_TIMEOUT_MS = 2000;

export interface RunnerDeps {
  db: Db;
  log: Logger;
  clock: Clock;
}

export abstract class BaseRunner implements JobRunner {
  abstract readonly mode: 'local' | 'bullmq';
  readonly registry = new HandlerRegistry();
  readonly store: JobStore;
  protected readonly log: Logger;
  /** Jobs running in this process, so cancel and shutdown can abort them at once. */
  protected readonly running = new Map<string, AbortController>();
  /**
   * Their handlers. An aborted attempt ends at once (executeJob races the
   * handler against its signal), but the handler may still be cleaning up
   * (killing a child, removing its workspace): a stop waits for that too.
   */
  protected readonly handlers = new InFlight();

  constructor(deps: RunnerDeps) {
    this.store = new JobStore(deps.db.kysely, deps.db.dialect, deps.clock);
    this.log = deps.log.child({ component: 'jobs' });
  }

  register<I, R>(kind: string, handler: JobHandler<I, R>, options?: HandlerOptions): void {
    this.registry.register(kind, handler, options);
  }

  has(kind: string): boolean {
    return this.registry.get(kind) !== undefined;
  }

  abstract enqueue<I>(kind: string, input: I, options: EnqueueOptions): Promise<Job<I>>;
  abstract start(): Promise<void>;
  abstract stop(graceMs?: number): Promise<void>;
  abstract healthCheck(timeoutMs?: number): Promise<void>;

  /** Inserts the row (through `q`, a caller's transaction, when given); `created` false when a live job with the same dedupe key was returned instead. */
  protected async insert(kind: string, input: unknown, options: EnqueueOptions, q?: Kysely<Database>): Promise<{ row: JobRow; created: boolean }> {
    const spec = this.registry.require(kind);
    return this.store.insert(
      {
        type: kind,
        input,
        userId: options.userId,
        maxAttempts: Math.max(1, options.maxAttempts ?? spec.maxAttempts),
        dedupeKey: options.dedupeKey,
      },
      q,
    );
  }

  async enqueueWithin<I>(tx: Transaction<Database>, kind: string, input: I, options: Omit<EnqueueOptions, 'dedupeKey'>): Promise<{ job: Job<I>; dispatch: () => Promise<void> }> {
    const { row } = await this.insert(kind, input, options, tx);
    return { job: toJob(row) as Job<I>, dispatch: () => this.dispatch(row) };
  }

  /** Hands a job whose row is committed to whatever runs it: never throws (a job not handed over is found later all the same). */
  protected abstract dispatch(row: JobRow): Promise<void>;

  async get(jobId: string): Promise<Job | null> {
    const row = await this.store.get(jobId);
    return row ? toJob(row) : null;
  }

  list(query: ListQuery): Promise<JobPage> {
    return this.store.list(query);
  }

  async cancel(jobId: string): Promise<Job | null> {
    const row = await this.store.get(jobId);
    if (!row) return null;
    if (!this.registry.get(row.type)?.cancellable || isFinished(row.status)) return toJob(row);
    await this.store.cancel(jobId);
    // A job running in another process notices at its next heartbeat, when its lease renewal fails.
    const controller = this.running.get(jobId);
    if (controller) abortFor(controller, 'cancelled');
    return this.get(jobId);
  }

  pruneFinished(before: string): Promise<number> {
    const kept = this.registry.kept();
    return deleteInPages(() => this.store.deleteFinished(before, kept, PRUNE_PAGE));
  }

  deleteFinishedOf(userId: string): Promise<number> {
    return this.store.deleteFinishedOf(userId);
  }

  async waitFor(jobId: string, timeoutMs: number): Promise<Job> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const row = await this.store.get(jobId);
      if (row && isFinished(row.status)) return toJob(row);
      if (Date.now() >= deadline) {
        throw new Error(`job ${jobId} did not finish within ${timeoutMs} ms (status ${row?.status ?? 'missing'})`);
      }
      await new Promise((r) => setTimeout(r, 20));
    }
  }

  /** Aborts every job running here and waits (bounded) for their handlers to let go. */
  protected async drain(active: Set<Promise<unknown>>, graceMs: number): Promise<void> {
    const settled = (ms: number) => within(Promise.allSettled([...active]), ms);
    await settled(graceMs);
    if (active.size === 0) return;
    this.log.warn({ jobs: [...this.running.keys()] }, 'jobs still running at shutdown: giving them back to the queue');
    for (const controller of this.running.values()) abortFor(controller, 'shutdown');
    await settled(5000);
    await this.handlers.settled(5000);
  }
}
