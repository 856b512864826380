/**
 * The default runner: jobs in the database, run inside `kiln serve`,
 * JOB_CONCURRENCY at a time. Any number of processes may share one database:
 * each claims with one atomic UPDATE and holds a lease it renews while the
 * job runs; a job whose process died is claimed again when its lease ends.
 */
import { hostname } from 'node:os';
import { newId } from '../../ids.js';
import { executeJob } from './execute.js';
import { BaseRunner, type RunnerDeps } from './runner.js';
import { toJob, type JobRow } from './store.js';
import type { EnqueueOptions, Job } from './types.js';

export interface LocalRunnerOptions {
  concurrency: number;
  /** How long a claim holds without renewal (renewed every third of it). Default 30 s. */
  leaseMs?: number;
  /** Idle poll, for jobs other processes enqueue and retries coming due. Default 250 ms. */
  pollMs?: number;
}

export class LocalJobRunner extends BaseRunner {
  readonly mode = 'local' as const;
  private readonly workerId = `${hostname()}:${process.pid}:${newId().slice(0, 8)}`;
  private readonly concurrency: number;
  private readonly leaseMs: number;
  private readonly pollMs: number;
  private readonly active = new Set<Promise<unknown>>();
  private started = false;
  /** Cleared for good by stopClaiming: the process is shutting down. */
  private claiming = true;
  private loopDone: Promise<void> = Promise.resolve();
  private wakeUp: (() => void) | null = null;
  private lastExpiredCheck = 0;
  private woken = false;

  constructor(deps: RunnerDeps, options: LocalRunnerOptions) {
    super(deps);
    this.concurrency = Math.max(1, options.concurrency);
    this.leaseMs = options.leaseMs ?? 30_000;
    this.pollMs = options.pollMs ?? 250;
  }

  async enqueue<I>(kind: string, input: I, options: EnqueueOptions): Promise<Job<I>> {
    const { row } = await this.insert(kind, input, options);
    this.wake();
    return toJob(row) as Job<I>;
  }

  protected async dispatch(): Promise<void> {
    this.wake();
  }

  async start(): Promise<void> {
    // A shutdown that began while the process was still starting (a signal before `jobs.start()`) claims nothing.
    if (this.started || !this.claiming) return;
    this.started = true;
    this.loopDone = this.loop();
  }

  /**
   * Claims no job from now on; the jobs running go on, and stop() gives them
   * their grace. Called at a shutdown's signal: the HTTP connections may
   * take seconds to drain before stop() comes, and a job claimed meanwhile
   * would only be cut short by it. A claim already under way still launches
   * its job. For good: a start() afterwards does nothing.
   */
  stopClaiming(): void {
    this.claiming = false;
    this.wake();
  }

  async stop(graceMs = 10_000): Promise<void> {
    if (!this.started) return;
    this.started = false;
    this.wake();
    await this.loopDone;
    await this.drain(this.active, graceMs);
  }

  /** Started and not stopped: its loop claims due jobs. (A database it cannot reach is the database check's to report.) */
  async healthCheck(): Promise<void> {
    if (!this.claiming) throw new Error('the job runner is shutting down: it claims no more jobs');
    if (!this.started) throw new Error('the job runner is not running: jobs would stay queued');
  }

  private wake(): void {
    this.woken = true;
    this.wakeUp?.();
  }

  /** Sleeps up to `ms`, or less when woken; a wake that came while awake is not lost. */
  private async sleep(ms: number): Promise<void> {
    if (this.woken) {
      this.woken = false;
      return;
    }
    await new Promise<void>((resolve) => {
      const done = () => {
        clearTimeout(timer);
        this.wakeUp = null;
        resolve();
      };
      const timer = setTimeout(done, ms);
      this.wakeUp = done;
    });
    this.woken = false;
  }

  private async loop(): Promise<void> {
    while (this.started && this.claiming) {
      if (this.running.size >= this.concurrency) {
        await this.sleep(this.pollMs);
        continue;
      }
      let row: JobRow | undefined;
      try {
        row = await this.claim();
      } catch (err) {
        this.log.error({ err }, 'could not claim a job; trying again shortly');
        await this.sleep(this.pollMs * 4);
        continue;
      }
      if (row) this.launch(row);
      else await this.sleep(this.pollMs);
    }
  }

  /** Queued jobs first; jobs of dead runners when idle, and at least every poll interval under load. */
  private async claim(): Promise<JobRow | undefined> {
    const kinds = this.registry.names();
    const expiredDue = Date.now() - this.lastExpiredCheck >= this.pollMs;
    const takeExpired = async () => {
      this.lastExpiredCheck = Date.now();
      return this.store.claimNext(kinds, this.workerId, this.leaseMs, true);
    };
    if (expiredDue) {
      const row = await takeExpired();
      if (row) return row;
    }
    return this.store.claimNext(kinds, this.workerId, this.leaseMs);
  }

  private launch(row: JobRow): void {
    const controller = new AbortController();
    this.running.set(row.job_id, controller);
    const deps = { store: this.store, registry: this.registry, log: this.log, workerId: this.workerId, leaseMs: this.leaseMs, handlers: this.handlers };
    const run = executeJob(row, deps, controller)
      .then((outcome) => {
        // The poll would find the retry too; the timer makes it start on time.
        if (outcome.kind === 'retry' || outcome.kind === 'deferred') setTimeout(() => this.wake(), outcome.delayMs + 5).unref();
      })
      .catch((err: unknown) => {
        // The row keeps its lease and is taken over when it runs out: nothing is lost.
        this.log.error({ err, jobId: row.job_id }, 'could not record the end of a job');
      })
      .finally(() => {
        this.running.delete(row.job_id);
        this.active.delete(run);
        this.wake();
      });
    this.active.add(run);
  }
}
