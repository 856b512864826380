/**
 * The job system's public shapes: the job row as the API answers it, the
 * handler signature, the options a kind registers with, and the JobRunner
 * interface both runners (local.ts, bullmq.ts) implement.
 */
import type { Transaction } from 'kysely';
import type { Logger } from 'pino';
import type { Database } from '../db/schema.js';

export type JobStatus = 'queued' | 'processing' | 'completed' | 'failed' | 'cancelled';

export const JOB_STATUSES: readonly JobStatus[] = ['queued', 'processing', 'completed', 'failed', 'cancelled'];

export interface JobErrorInfo {
  code: string;
  detail: string;
}

/** Exactly the API's job shape, for every kind of job. */
export interface Job<I = unknown, R = unknown> {
  job_id: string;
  type: string;
  status: JobStatus;
  progress: number;
  attempts: number;
  max_attempts: number;
  input: I;
  result: R | null;
  error: JobErrorInfo | null;
  created_at: string;
  started_at: string | null;
  finished_at: string | null;
  user_id: string | null;
}

/** What a handler gets besides its input. */
export interface JobContext {
  jobId: string;
  type: string;
  userId: string | null;
  /** When the job was asked for (its `created_at`). */
  createdAt: string;
  /** 1 on the first run, 2 on the first retry, … */
  attempt: number;
  maxAttempts: number;
  /** Aborted on the kind's timeout, on cancel, on shutdown past the grace period, or when the lease is lost. */
  signal: AbortSignal;
  /**
   * Progress 0..1 (clamped); `extra` is kept in the job's `result` while it
   * runs (a stage name, counts) and replaced by the real result at the end.
   */
  report(progress: number, extra?: Record<string, unknown>): Promise<void>;
  log: Logger;
}

/**
 * A kind's work. Return the result (JSON-serialisable). Throw
 * TransientJobError to be retried with backoff, PermanentJobError to fail at
 * once, DeferJob to run again later without spending an attempt; anything
 * else is a bug and fails at once as `internal_error`.
 */
export type JobHandler<I = unknown, R = unknown> = (input: I, job: JobContext) => Promise<R>;

export interface BackoffOptions {
  /** Delay before the first retry; doubled for every later one. */
  delayMs: number;
  maxDelayMs?: number;
}

export interface HandlerOptions {
  /** Default max_attempts for jobs of this kind (3). */
  maxAttempts?: number;
  /** Per-attempt limit; the handler's signal aborts and the attempt fails as `timeout` (transient). Default 10 minutes. */
  timeoutMs?: number;
  backoff?: BackoffOptions;
  /** Whether `cancel` may stop jobs of this kind (default false). */
  cancellable?: boolean;
  /**
   * Finished jobs of this kind are kept past JOB_RETENTION_DAYS (default
   * false): for a kind whose row owns what the job made, such as the
   * pipeline's model files, which the orphan sweep keeps while a job row names them.
   */
  keepFinished?: boolean;
}

export interface EnqueueOptions {
  userId: string | null;
  maxAttempts?: number;
  /**
   * At most one queued or processing job per key: enqueueing again while one
   * is in flight returns that job (the caller puts the user in the key when
   * the sharing should be per user).
   */
  dedupeKey?: string;
}

export type ListScope = { userId: string; all?: never } | { all: true; userId?: never };

export type ListQuery = ListScope & {
  status?: JobStatus;
  type?: string;
  /** 1..100, default 20. */
  limit?: number;
  /** `next_cursor` of the previous page. */
  cursor?: string;
};

export interface JobPage {
  jobs: Job[];
  next_cursor: string | null;
}

export interface JobRunner {
  /** `local`: database + in-process; `bullmq`: Redis queue, `kiln worker` runs handlers. */
  readonly mode: 'local' | 'bullmq';
  /** Modules call this at startup, in every process (serve and worker), once per kind. */
  register<I, R>(kind: string, handler: JobHandler<I, R>, options?: HandlerOptions): void;
  /** Whether `kind` has a handler here (a test may register a kind with its own options before the app does). */
  has(kind: string): boolean;
  enqueue<I>(kind: string, input: I, options: EnqueueOptions): Promise<Job<I>>;
  /**
   * Writes the job's row within the caller's transaction, so the job exists
   * exactly when the caller's own change commits: no change without its job,
   * no job without its change. Call `dispatch` after the commit to hand the
   * job over at once; one never dispatched (the process died right after the
   * commit) is still run, found by the local runner's next poll or by BullMQ
   * workers' reconcile. Without a dedupe key: the caller's change is what
   * makes the job unique.
   */
  enqueueWithin<I>(tx: Transaction<Database>, kind: string, input: I, options: Omit<EnqueueOptions, 'dedupeKey'>): Promise<{ job: Job<I>; dispatch: () => Promise<void> }>;
  get(jobId: string): Promise<Job | null>;
  /** Newest first; the cursor is opaque. Throws ValidationFailed (422 `invalid_cursor`) for a cursor it did not make. */
  list(query: ListQuery): Promise<JobPage>;
  /**
   * Cancels a queued or processing job of a cancellable kind. Returns the job
   * as it is afterwards (unchanged when it could not be cancelled); null when missing.
   */
  cancel(jobId: string): Promise<Job | null>;
  /**
   * Deletes the rows of jobs that finished (completed, failed, cancelled)
   * before `before`, except kinds registered with `keepFinished`; resolves
   * with how many. In pages, so a long backlog never loads at once.
   */
  pruneFinished(before: string): Promise<number>;
  /** Deletes the finished jobs of a user whose account is deleted, every kind; jobs still queued or running end as they would. */
  deleteFinishedOf(userId: string): Promise<number>;
  /** Begins running jobs in this process where this runner runs them here (local; bullmq worker role). */
  start(): Promise<void>;
  /** Stops claiming, waits up to `graceMs` for running jobs, then aborts them. */
  stop(graceMs?: number): Promise<void>;
  /** Resolves with the job once it is completed, failed or cancelled; rejects after `timeoutMs`. */
  waitFor(jobId: string, timeoutMs: number): Promise<Job>;
  /**
   * Resolves when this runner can take work now, rejects (within about
   * `timeoutMs`) saying why not: the local runner is started and not stopped;
   * BullMQ's Redis connection answers a PING.
   */
  healthCheck(timeoutMs?: number): Promise<void>;
}
