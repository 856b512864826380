/**
 * The runner with REDIS_URL: `kiln serve` writes the row and adds a BullMQ
 * job carrying only its id; `kiln worker` processes (any number) take jobs
 * from Redis and run the handlers. The row stays the truth: BullMQ only
 * decides who runs what when, the row decides whether a run still counts.
 */
import { hostname } from 'node:os';
import type { Job as BullJob, JobsOptions, Queue, Worker } from 'bullmq';
import type { Redis } from 'ioredis';
import { newId } from '../../ids.js';
import { executeJob, MAX_RECOVERIES } from './execute.js';
import { within } from '../inflight.js';
import { REDIS_BREAK_MS, watchRedisConnection } from '../redis.js';
import { BaseRunner, bounded, HEALTH_TIMEOUT_MS, type RunnerDeps } from './runner.js';
import { toJob, type JobRow } from './store.js';
import type { EnqueueOptions, Job } from './types.js';

export interface BullRunnerOptions {
  redisUrl: string;
  /** `serve` only enqueues; `worker` also runs handlers once started. */
  role: 'serve' | 'worker';
  /** Jobs one worker process runs at a time. */
  concurrency: number;
  /** Redis key prefix (REDIS_PREFIX; tests use one of their own). Default `kiln`. */
  prefix?: string;
  /** BullMQ lock: a worker silent this long is presumed dead. Default 30 s. */
  lockDurationMs?: number;
  /** How often workers look for jobs of dead workers. Default 30 s. */
  stalledIntervalMs?: number;
  /** How often a worker re-adds jobs BullMQ lost track of. Default 60 s. */
  reconcileMs?: number;
}

const QUEUE = 'jobs';

/** How long an enqueue waits for Redis to take the job before leaving it to the reconcile. */
const ENQUEUE_TIMEOUT_MS = 2000;

interface Payload {
  jobId: string;
}

/** How long after another run's lease would end a job handed over meanwhile is asked for again. */
const LEASE_MARGIN_MS = 1000;

// bullmq and ioredis are loaded only by a deployment with REDIS_URL: the local runner never needs them.
async function loadBullmq() {
  const [{ Queue, Worker, DelayedError }, { Redis }] = await Promise.all([import('bullmq'), import('ioredis')]);
  return { Queue, Worker, DelayedError, Redis };
}

/** Thrown to BullMQ so it schedules the retry; carries the delay the row got. */
class RetryLater extends Error {
  constructor(readonly delayMs: number) {
    super('retry later');
  }
}

export class BullJobRunner extends BaseRunner {
  readonly mode = 'bullmq' as const;
  private readonly workerId = `${hostname()}:${process.pid}:${newId().slice(0, 8)}`;
  /** The queue and its connection, made as soon as bullmq has loaded. */
  private readonly opened: Promise<{ queue: Queue<Payload>; connection: Redis }>;
  private stopped = false;
  private worker: Worker<Payload> | null = null;
  /** BullMQ's DelayedError: a processor that moved its job to delayed itself throws it. */
  private delayedError: (new () => Error) | null = null;
  private workerConnection: Redis | null = null;
  private reconcileTimer: NodeJS.Timeout | null = null;
  private readonly active = new Set<Promise<unknown>>();
  private readonly lockDurationMs: number;
  /** Adds waiting for the next flush: a burst of enqueues costs one Redis round trip, not one each. */
  private pending: Array<{ row: JobRow; done: (err?: unknown) => void }> = [];
  /** Until when enqueues skip Redis after a job it failed to take (Date.now() ms). */
  private dispatchBrokenUntil = 0;

  constructor(
    deps: RunnerDeps,
    private readonly options: BullRunnerOptions,
  ) {
    super(deps);
    this.lockDurationMs = options.lockDurationMs ?? 30_000;
    this.opened = this.openQueue();
  }

  private async openQueue(): Promise<{ queue: Queue<Payload>; connection: Redis }> {
    const { Queue, Redis } = await loadBullmq();
    // Fail fast when Redis is down: the row is already written and a worker's reconcile re-adds it.
    const connection = new Redis(this.options.redisUrl, { maxRetriesPerRequest: 1, lazyConnect: false });
    const watch = watchRedisConnection(connection, this.log, 'job queue');
    const queue = new Queue<Payload>(QUEUE, { connection, prefix: this.options.prefix ?? 'kiln' });
    queue.on('error', watch.errorsOf('bullmq queue error'));
    return { queue, connection };
  }

  async enqueue<I>(kind: string, input: I, options: EnqueueOptions): Promise<Job<I>> {
    const { row, created } = await this.insert(kind, input, options);
    if (created) await this.dispatch(row);
    return toJob(row) as Job<I>;
  }

  protected async dispatch(row: JobRow): Promise<void> {
    // Redis failed to take a job a moment ago: this one is left to the reconcile at once, rather than
    // every request of an outage waiting ENQUEUE_TIMEOUT_MS for the same failure (platform/redis.ts's breaker).
    if (Date.now() < this.dispatchBrokenUntil) {
      this.log.warn({ jobId: row.job_id }, 'Redis failed to take a job a moment ago; this one is left for a worker to pick up from the database');
      return;
    }
    try {
      // Bounded: a Redis that stops answering must not hold the request. The row is written, and a
      // worker's reconcile adds the job later (an add that lands meanwhile is then a no-op).
      await bounded(this.addToQueue(row), ENQUEUE_TIMEOUT_MS, 'Redis did not take the job in time');
    } catch (err) {
      this.dispatchBrokenUntil = Date.now() + REDIS_BREAK_MS;
      this.log.error({ err, jobId: row.job_id }, 'could not hand the job to Redis; a worker will pick it up from the database');
    }
  }

  private addToQueue(row: JobRow): Promise<void> {
    return new Promise((resolve, reject) => {
      this.pending.push({ row, done: (err) => (err === undefined ? resolve() : reject(err)) });
      if (this.pending.length === 1) setImmediate(() => void this.flush());
    });
  }

  private async flush(): Promise<void> {
    const batch = this.pending;
    this.pending = [];
    try {
      const { queue } = await this.opened;
      await queue.addBulk(batch.map(({ row }) => ({ name: row.type, data: { jobId: row.job_id }, opts: this.jobOptions(row) })));
      for (const b of batch) b.done();
    } catch (err) {
      for (const b of batch) b.done(err);
    }
  }

  private jobOptions(row: JobRow): JobsOptions {
    return {
      // The same id in Redis makes a second add of one job a no-op.
      jobId: row.job_id,
      // The row decides when attempts are spent; BullMQ must never give up first.
      attempts: row.max_attempts + MAX_RECOVERIES + 1,
      backoff: { type: 'kiln' },
      removeOnComplete: true,
      removeOnFail: true,
    };
  }

  async start(): Promise<void> {
    if (this.options.role !== 'worker' || this.worker) return;
    const { Worker, DelayedError, Redis } = await loadBullmq();
    // Another start() won the race, or stop() came while bullmq was loading.
    if (this.worker || this.stopped) return;
    this.delayedError = DelayedError;
    const connection = new Redis(this.options.redisUrl, { maxRetriesPerRequest: null });
    const watch = watchRedisConnection(connection, this.log, 'job worker');
    this.workerConnection = connection;
    this.worker = new Worker<Payload>(QUEUE, (job, token) => this.process(job, token), {
      connection,
      prefix: this.options.prefix ?? 'kiln',
      concurrency: this.options.concurrency,
      lockDuration: this.lockDurationMs,
      stalledInterval: this.options.stalledIntervalMs ?? 30_000,
      // Our own count (the row's `recoveries`) fails a job whose workers keep dying, before BullMQ would.
      maxStalledCount: MAX_RECOVERIES + 2,
      settings: { backoffStrategy: (_attempts, _type, err) => (err instanceof RetryLater ? err.delayMs : 1000) },
    });
    this.worker.on('error', watch.errorsOf('bullmq worker error'));
    const reconcileMs = this.options.reconcileMs ?? 60_000;
    this.reconcileTimer = setInterval(() => void this.reconcile(reconcileMs), reconcileMs);
    this.reconcileTimer.unref();
    void this.reconcile(reconcileMs);
  }

  private async process(bull: BullJob<Payload>, token: string | undefined): Promise<void> {
    // Bounded: a worker whose database does not answer must not sit on the job while Redis renews its lock.
    // The failure hands the job back to BullMQ (after its 1 s backoff), for a worker that can reach the database.
    const claim = this.store.claimById(bull.data.jobId, this.workerId, this.lockDurationMs);
    const row = await bounded(claim, this.lockDurationMs, 'the database did not answer the claim of a job in time').catch((err: unknown) => {
      // The claim may still land later: the row is given straight back then (its attempt too), rather than
      // left leased to a run that never starts, which costs a recovery once the lease has run out.
      claim.then((late) => late && this.store.release(late.job_id, this.workerId)).catch(() => undefined);
      throw err;
    });
    if (!row) {
      // Another run holds a live lease (its worker lost Redis, not its life): ask again once the lease
      // would have run out, counting no attempt. It ends the job itself, or its lease runs out and this takes over.
      const leftMs = await this.store.leaseLeftMs(bull.data.jobId);
      if (leftMs > 0) {
        this.log.info({ jobId: bull.data.jobId, leftMs }, 'job handed over by Redis is still running elsewhere; asking again when its lease runs out');
        await this.askAgainIn(bull, token, leftMs + LEASE_MARGIN_MS);
      }
      // Finished, cancelled or gone: the row says there is nothing left to do.
      return;
    }
    const controller = new AbortController();
    this.running.set(row.job_id, controller);
    const deps = { store: this.store, registry: this.registry, log: this.log, workerId: this.workerId, leaseMs: this.lockDurationMs, handlers: this.handlers };
    const run = executeJob(row, deps, controller);
    this.active.add(run);
    try {
      const outcome = await run;
      if (outcome.kind === 'retry') throw new RetryLater(outcome.delayMs);
      if (outcome.kind === 'released') throw new RetryLater(0);
      // Delayed by the job itself: BullMQ counts no attempt, however often a job waits.
      if (outcome.kind === 'deferred') await this.askAgainIn(bull, token, outcome.delayMs);
      // This worker could not keep its lease (its database did not answer): the job goes back to Redis for any
      // worker, which takes the row over once the lease has run out there too. Not at once: a worker that
      // waits already comes first then, rather than this one taking it straight back.
      if (outcome.kind === 'lapsed') await this.askAgainIn(bull, token, LEASE_MARGIN_MS);
    } finally {
      this.running.delete(row.job_id);
      this.active.delete(run);
    }
  }

  /** Moves the job to BullMQ's delayed set for `delayMs`, counting no BullMQ attempt (throws BullMQ's DelayedError, as it asks). */
  private async askAgainIn(bull: BullJob<Payload>, token: string | undefined, delayMs: number): Promise<void> {
    if (!this.delayedError) return; // set by start(), before any job is processed
    await bull.moveToDelayed(Date.now() + delayMs, token);
    throw new this.delayedError();
  }

  /** Re-adds jobs the database expects to run but Redis may not know (a no-op for ids it has). */
  private async reconcile(graceMs: number): Promise<void> {
    try {
      for (const row of await this.store.orphans(graceMs, 500)) await this.addToQueue(row);
    } catch (err) {
      this.log.warn({ err }, 'could not reconcile jobs with Redis');
    }
  }

  /**
   * A PING on the queue's connection, the one every enqueue goes through,
   * answered within `timeoutMs`. With Redis down, ioredis keeps the command
   * queued while it reconnects: the bound is what turns that into an answer.
   */
  async healthCheck(timeoutMs = HEALTH_TIMEOUT_MS): Promise<void> {
    if (this.stopped) throw new Error('the job runner is stopped');
    await bounded(
      this.opened.then(({ connection }) => connection.ping()),
      timeoutMs,
      'Redis did not answer a PING in time',
    );
  }

  async stop(graceMs = 10_000): Promise<void> {
    this.stopped = true;
    if (this.reconcileTimer) clearInterval(this.reconcileTimer);
    this.reconcileTimer = null;
    const worker = this.worker;
    this.worker = null;
    if (worker) {
      // Stop taking jobs at once; the running ones get their grace period, then give their rows back.
      const closing = worker.close();
      await this.drain(this.active, graceMs);
      await within(closing, 2000);
      if (this.active.size > 0) await worker.close(true);
    }
    // BullMQ leaves connections it was given open: they are ours to close.
    this.workerConnection?.disconnect();
    this.workerConnection = null;
    const { queue, connection } = await this.opened;
    await queue.close();
    connection.disconnect();
  }
}
