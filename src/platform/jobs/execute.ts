/**
 * Runs one claimed job, the same way for both runners: the handler gets an
 * AbortSignal (timeout, cancel, shutdown, lost lease), the lease is renewed
 * while it runs, and the ending is classified and written to the row.
 */
import type { Logger } from 'pino';
import type { InFlight } from '../inflight.js';
import { DeferJob, INTERNAL_ERROR, JobError, PermanentJobError, TransientJobError } from './errors.js';
import { outageOf } from './outage.js';
import { backoffDelay, type HandlerRegistry } from './registry.js';
import { toJob, type JobRow, type JobStore } from './store.js';
import type { JobContext, JobErrorInfo } from './types.js';

/** A job whose runner died this many times is failed instead of taken over again. */
export const MAX_RECOVERIES = 5;

export type Outcome =
  | { kind: 'completed' }
  | { kind: 'retry'; delayMs: number }
  /** Back in the queue for `delayMs`, its attempt not spent (DeferJob). */
  | { kind: 'deferred'; delayMs: number }
  | { kind: 'failed' }
  | { kind: 'released' }
  /** Someone else holds the row now (lease lost, cancelled): nothing was written. */
  | { kind: 'lost' }
  /**
   * The lease ran out with no renewal confirmed (the database did not answer):
   * nothing was written, and the job is for whoever claims it next.
   */
  | { kind: 'lapsed' };

export interface ExecuteDeps {
  store: JobStore;
  registry: HandlerRegistry;
  log: Logger;
  workerId: string;
  leaseMs: number;
  /** Where the handler's own promise is tracked until it settles, past the attempt's end (runner.ts). */
  handlers: InFlight;
}

/** Why a running job's signal was aborted. */
export type AbortWhy = 'timeout' | 'lost' | 'cancelled' | 'shutdown';

class AbortReason extends Error {
  constructor(readonly why: AbortWhy) {
    super(why);
  }
}

/** Why `signal` (a JobContext's) was aborted, or null while it is not: for a job that cleans up differently on a shutdown than on a timeout. */
export function abortWhy(signal: AbortSignal): AbortWhy | null {
  return signal.aborted && signal.reason instanceof AbortReason ? signal.reason.why : null;
}

export const INTERRUPTED: JobErrorInfo = { code: 'interrupted', detail: 'The job was interrupted too many times.' };

/** `controller` lets the runner abort the job (cancel, shutdown). */
export async function executeJob(row: JobRow, deps: ExecuteDeps, controller: AbortController): Promise<Outcome> {
  const { store, registry, log, workerId, leaseMs } = deps;
  const job = toJob(row);
  const spec = registry.get(job.type);
  // An ending is written once more after an outage: the pool may hand out once more the connection that just
  // dropped under the handler (it learns of the drop a moment later). Every write is fenced: a second one that
  // finds the first applied changes nothing, and says the row is no longer this run's.
  const record = async (write: () => Promise<boolean>, outcome: Outcome): Promise<Outcome> => {
    const written = await write().catch((err: unknown) => (outageOf(err) ? write() : Promise.reject(err)));
    return written ? outcome : { kind: 'lost' };
  };
  const fail = (error: JobErrorInfo): Promise<Outcome> => record(() => store.fail(job.job_id, workerId, error), { kind: 'failed' });

  if (!spec) return fail({ code: 'unknown_kind', detail: `No handler is registered for jobs of type ${job.type}.` });
  if (row.recoveries > MAX_RECOVERIES) return fail(INTERRUPTED);

  const jobLog = log.child({ jobId: job.job_id, type: job.type, attempt: job.attempts });
  const timeout = setTimeout(() => controller.abort(new AbortReason('timeout')), spec.timeoutMs);
  const lease = new LeaseWatch(leaseMs);
  // Six looks a lease: a renewal whose answer is slow (one is out at a time) is followed by the next soon after,
  // not a third of a lease later, which let a single answer slower than a third of a lease end the run.
  const heartbeat = setInterval(() => {
    // Past the lease with no renewal confirmed, another runner may hold the job: stop rather than run it
    // twice, or (BullMQ) hold it from the workers that can reach the database until the job's timeout.
    if (lease.ranOut()) {
      jobLog.warn({ leaseMs }, 'no lease renewal confirmed for a whole lease: giving the job up');
      controller.abort(new AbortReason('lost'));
      return;
    }
    lease.renew(() => store.heartbeat(job.job_id, workerId, leaseMs)).then(
      (held) => held === false && controller.abort(new AbortReason('lost')),
      (err: unknown) => jobLog.warn({ err }, 'job heartbeat failed'),
    );
  }, Math.max(50, Math.floor(leaseMs / 6)));
  const aborted = new Promise<never>((_, reject) => {
    const onAbort = () => reject(controller.signal.reason);
    if (controller.signal.aborted) onAbort();
    else controller.signal.addEventListener('abort', onAbort, { once: true });
  });
  aborted.catch(() => undefined); // only observed through the race below

  const ctx: JobContext = {
    jobId: job.job_id,
    type: job.type,
    userId: job.user_id,
    createdAt: job.created_at,
    attempt: job.attempts,
    maxAttempts: job.max_attempts,
    signal: controller.signal,
    log: jobLog,
    async report(progress, extra) {
      const p = Number.isFinite(progress) ? Math.min(1, Math.max(0, progress)) : 0;
      await store.progress(job.job_id, workerId, p, extra);
    },
  };

  try {
    // The race lets a handler that ignores its signal still end its job on time.
    const result = await Promise.race([deps.handlers.track(spec.handler(job.input, ctx)), aborted]);
    return await record(() => store.complete(job.job_id, workerId, result), { kind: 'completed' });
  } catch (err) {
    if (err instanceof DeferJob) {
      return await record(() => store.defer(job.job_id, workerId, err.delayMs), { kind: 'deferred', delayMs: err.delayMs });
    }
    const error = classify(err, spec.timeoutMs);
    if (error === 'lost') return lease.lapsed ? { kind: 'lapsed' } : { kind: 'lost' };
    // Shutting down is not the job's fault: it goes back to the queue without spending an attempt.
    if (error === 'released') return await record(() => store.release(job.job_id, workerId), { kind: 'released' });
    // An outage's own error says what went down: the operator's to see, never the job's owner.
    const cause = error.outage ? { err } : {};
    if (error.transient && job.attempts < job.max_attempts) {
      const delayMs = retryDelay(backoffDelay(spec.backoff, job.attempts), error.retryAfterMs);
      jobLog[error.outage ? 'warn' : 'info']({ code: error.info.code, delayMs, ...cause }, 'job will be retried');
      return await record(() => store.retry(job.job_id, workerId, error.info, delayMs), { kind: 'retry', delayMs });
    }
    if (error.bug) jobLog.error({ err }, 'job handler failed with an unexpected error');
    else if (error.outage) jobLog.warn({ code: error.info.code, ...cause }, 'job failed: its last attempt met an outage');
    // The owner sees the code and detail on the job; the operator sees them here, as a warning when they are the deployment's to mend.
    else jobLog[error.forOperator ? 'warn' : 'info']({ code: error.info.code, detail: error.info.detail }, 'job failed');
    return fail(error.info);
  } finally {
    clearTimeout(timeout);
    clearInterval(heartbeat);
  }
}

/**
 * `outage`: a database or network failure (outage.ts), retried like a
 * transient error. `retryAfterMs`: how long the failing service asked to be
 * left alone.
 */
type Classified = { info: JobErrorInfo; transient: boolean; bug: boolean; outage: boolean; forOperator?: boolean; retryAfterMs?: number } | 'lost' | 'released';

/** The longest a service's Retry-After holds a job back: beyond it the job asks again anyway. */
export const RETRY_AFTER_MAX_MS = 15 * 60_000;

/** The backoff, or the wait the service asked for when that is longer (up to RETRY_AFTER_MAX_MS). */
export function retryDelay(backoffMs: number, retryAfterMs: number | undefined): number {
  return Math.max(backoffMs, Math.min(retryAfterMs ?? 0, RETRY_AFTER_MAX_MS));
}

function classify(err: unknown, timeoutMs: number): Classified {
  const ended = (info: JobErrorInfo, transient: boolean) => ({ info, transient, bug: false, outage: false });
  if (err instanceof AbortReason) {
    if (err.why === 'timeout') return ended({ code: 'timeout', detail: `The job took longer than ${timeoutMs} ms.` }, true);
    return err.why === 'shutdown' ? 'released' : 'lost';
  }
  if (err instanceof TransientJobError) return { ...ended({ code: err.code, detail: err.detail }, true), retryAfterMs: err.retryAfterMs };
  if (err instanceof PermanentJobError) return { ...ended({ code: err.code, detail: err.detail }, false), forOperator: err.forOperator };
  if (err instanceof JobError) return ended({ code: err.code, detail: err.detail }, false);
  const outage = outageOf(err);
  if (outage) return { ...ended({ code: outage.code, detail: outage.detail }, true), outage: true };
  return { info: { ...INTERNAL_ERROR }, transient: false, bug: true, outage: false };
}

/**
 * Until when this run surely holds its job: a lease from when the last
 * confirmed renewal was sent (the claim, at first: a lease from the start
 * of the run is a few milliseconds generous, the claim's round trip).
 */
class LeaseWatch {
  private heldUntil: number;
  private renewing = false;
  /** The lease ran out unconfirmed: the run was given up for that, not because another holder was seen. */
  lapsed = false;

  constructor(private readonly leaseMs: number) {
    this.heldUntil = performance.now() + leaseMs;
  }

  ranOut(): boolean {
    if (performance.now() >= this.heldUntil) this.lapsed = true;
    return this.lapsed;
  }

  /**
   * Sends a renewal, unless one is still out (on a connection that hangs
   * they would pile up and take the whole pool): null then. A confirmed one
   * holds the job for a lease from when it was sent.
   */
  async renew(send: () => Promise<boolean>): Promise<boolean | null> {
    if (this.renewing) return null;
    this.renewing = true;
    const sentAt = performance.now();
    try {
      const held = await send();
      if (held) this.heldUntil = Math.max(this.heldUntil, sentAt + this.leaseMs);
      return held;
    } finally {
      this.renewing = false;
    }
  }
}

export function abortFor(controller: AbortController, why: 'cancelled' | 'shutdown'): void {
  controller.abort(new AbortReason(why));
}
