/**
 * Status-change webhooks. Each move of an order is POSTed to WEBHOOK_URL as
 * `{event:"order.status_changed", order_id, status, at}`, signed with
 * `X-Kiln-Signature: sha256=<hex HMAC-SHA256 of the raw body>` keyed by
 * WEBHOOK_SECRET, and delivered by the `webhook` job: a non-2xx answer or a
 * timeout is retried (first retry 20 s after the failure, then doubling), giving up
 * after 8 attempts. The request goes through the SSRF-guarded safeFetch: a
 * receiver on a private or loopback address is reached only when its host is
 * in FETCH_ALLOWED_HOSTS; otherwise the job fails at once
 * (`webhook_blocked_address`, logged as a warning) and nothing is sent.
 */
import { createHmac } from 'node:crypto';
import type { Transaction } from 'kysely';
import type { Context } from '../../context.js';
import type { Database } from '../../platform/db/schema.js';
import { FetchError, safeFetch, type FetchErrorCode } from '../../platform/fetch/index.js';
import { PermanentJobError, TransientJobError } from '../../platform/jobs/errors.js';
import type { JobContext } from '../../platform/jobs/types.js';
import type { OrderStatus } from './lifecycle.js';

export const WEBHOOK_JOB = 'webhook';
export const WEBHOOK_MAX_ATTEMPTS = 8;
/**
 * The spec's "first retry within 30 s": 20 s leaves room for the runner's
 * poll and a busy process (at 30 s exactly it came at 30.01-30.17 s).
 */
export const WEBHOOK_FIRST_RETRY_MS = 20_000;
const WEBHOOK_TIMEOUT_MS = 10_000;

export interface StatusChanged {
  event: 'order.status_changed';
  order_id: string;
  status: OrderStatus;
  at: string;
}

export interface WebhookJobOptions {
  /** Delay before the first retry (doubled for each later one). Tests shorten it; by default WEBHOOK_FIRST_RETRY_MS. */
  firstRetryMs?: number;
  /** How long one attempt waits for the receiver's answer before it counts as a timeout (retried). Tests shorten it; 10 s by default. */
  timeoutMs?: number;
}

/** The receiver's 2xx status (its body is never read). */
export interface WebhookResult {
  status: number;
}

export function signBody(secret: string, body: string): string {
  return `sha256=${createHmac('sha256', secret).update(body).digest('hex')}`;
}

/**
 * Queues the notification of a status change, when a webhook is configured,
 * in the transaction `tx` that makes the change: the two commit together, so
 * no change goes unannounced (a failure here fails the change). Returns what
 * to call once `tx` has committed to start the delivery at once.
 */
export async function announceStatusChange(ctx: Context, tx: Transaction<Database>, change: Omit<StatusChanged, 'event'>): Promise<() => Promise<void>> {
  if (!ctx.config.webhookUrl) return async () => {};
  const payload: StatusChanged = { event: 'order.status_changed', order_id: change.order_id, status: change.status, at: change.at };
  return (await ctx.jobs.enqueueWithin(tx, WEBHOOK_JOB, payload, { userId: null })).dispatch;
}

/** Answers that retrying cannot change: the configured URL itself is refused. */
const PERMANENT: ReadonlySet<FetchErrorCode> = new Set(['bad_url', 'bad_scheme', 'blocked_address']);

/** The job: one delivery attempt. URL and secret are read now, so a corrected configuration helps pending retries. */
async function deliver(ctx: Context, payload: StatusChanged, job: JobContext, timeoutMs: number): Promise<WebhookResult> {
  const { webhookUrl, webhookSecret } = ctx.config;
  // Retried, not failed for good: a process without the setting (one of several sharing the
  // database, or one restarted with it fixed) must not spend the delivery's last chance.
  if (!webhookUrl || !webhookSecret) throw new TransientJobError('webhook_not_configured', 'WEBHOOK_URL and WEBHOOK_SECRET are not both set in this process.');
  const body = JSON.stringify(payload);
  try {
    const res = await safeFetch(webhookUrl, {
      allowedHosts: ctx.config.fetchAllowedHosts,
      method: 'POST',
      headers: { 'content-type': 'application/json', 'x-kiln-signature': signBody(webhookSecret, body), 'user-agent': 'kiln-webhook' },
      body,
      // A redirect is not a delivery: it counts as a non-2xx answer and is retried.
      maxRedirects: 0,
      // The answer's body means nothing to us, whatever its size or pace: none of it is read, the
      // status counts as soon as it arrives (a receiver stalling its body is still delivered).
      maxBytes: 0,
      discardBody: true,
      totalTimeoutMs: timeoutMs,
      signal: job.signal,
    });
    return { status: res.status };
  } catch (err) {
    if (!(err instanceof FetchError)) throw err; // the job's own abort (timeout, shutdown): the runner decides
    if (PERMANENT.has(err.code)) {
      // Nothing was sent, and no retry will send it: the operator has to change WEBHOOK_URL or FETCH_ALLOWED_HOSTS.
      job.log.warn({ code: `webhook_${err.code}`, orderId: payload.order_id }, `status webhook not sent: ${err.message}`);
      throw new PermanentJobError(`webhook_${err.code}`, `The webhook URL is refused: ${err.message}`);
    }
    // Spec: any non-2xx answer or a timeout is retried, 4xx included.
    throw new TransientJobError(`webhook_${err.code}`, err.message);
  }
}

/**
 * Registers the `webhook` job kind on this Context's runner. Idempotent per
 * Context, so a test can register first with a short `firstRetryMs` or
 * `timeoutMs` and the app's own registration then leaves it alone.
 */
export function registerCustomOrderJobs(ctx: Context, options: WebhookJobOptions = {}): void {
  if (ctx.jobs.has(WEBHOOK_JOB)) return;
  const timeoutMs = options.timeoutMs ?? WEBHOOK_TIMEOUT_MS;
  ctx.jobs.register<StatusChanged, WebhookResult>(WEBHOOK_JOB, (payload, job) => deliver(ctx, payload, job, timeoutMs), {
    maxAttempts: WEBHOOK_MAX_ATTEMPTS,
    // The request's own timeout ends an attempt first; this only backs it up.
    timeoutMs: timeoutMs + 5_000,
    backoff: { delayMs: options.firstRetryMs ?? WEBHOOK_FIRST_RETRY_MS, maxDelayMs: 2 * 60 * 60_000 },
  });
}
