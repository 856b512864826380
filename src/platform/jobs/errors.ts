/**
 * What a handler throws to say how its job ended. Any other error is a bug:
 * the job fails as `internal_error` and the details stay in the log.
 */
export class JobError extends Error {
  constructor(
    readonly code: string,
    readonly detail: string,
  ) {
    super(detail);
    this.name = new.target.name;
  }
}

/**
 * Worth trying again later (a timeout, a 5xx, a 429): retried with backoff up
 * to max_attempts, and not before `retryAfterMs` when the service said how
 * long to wait (its Retry-After).
 */
export class TransientJobError extends JobError {
  constructor(
    code: string,
    detail: string,
    readonly retryAfterMs?: number,
  ) {
    super(code, detail);
  }
}

/**
 * Trying again will not help (404, not an image): the job fails at once.
 * `forOperator`: the cause is the deployment's, not the job's (a provider
 * that refuses Kiln's key, an outbound guard that refuses the provider), so
 * the failure is logged as a warning; others are logged at info.
 */
export class PermanentJobError extends JobError {
  constructor(
    code: string,
    detail: string,
    readonly forOperator = false,
  ) {
    super(code, detail);
  }
}

/**
 * Not done and not failed: the job waits on something else (another job's
 * work) and asks to run again in `delayMs`. It goes back to `queued` without
 * spending an attempt, so it holds no runner slot while it waits.
 */
export class DeferJob extends Error {
  constructor(readonly delayMs: number) {
    super(`deferred for ${delayMs} ms`);
    this.name = 'DeferJob';
  }
}

export const INTERNAL_ERROR = { code: 'internal_error', detail: 'The job failed unexpectedly.' } as const;
