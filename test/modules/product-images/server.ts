/**
 * A listening Kiln whose `ean_fetch` jobs use the options a test injects
 * (short timeouts and backoff), with its job runner started, pointing at a
 * fake product database on 127.0.0.1.
 */
import type { Env } from '../../../src/config.js';
import type { Context } from '../../../src/context.js';
import type { JobRunner } from '../../../src/platform/jobs/index.js';
import { registerProductImageJobs, type EanFetchOptions } from '../../../src/modules/product-images/fetch-job.js';
import { startServer, type TestServer } from '../../helpers/server.js';
import { loginHeaders } from '../../helpers/users.js';

export const FAST: EanFetchOptions = {
  connectTimeoutMs: 1_000,
  // Far above any answer a test's provider means to be in time (600-800 ms at most): on a loaded machine an answer
  // a second late must not time out, be retried and count as a second question to the provider.
  totalTimeoutMs: 10_000,
  backoff: { delayMs: 50, maxDelayMs: 200 },
  waitPollMs: 20,
};

/** FAST with a total timeout a test's provider can outwait on purpose. */
export const SHORT_TIMEOUT: EanFetchOptions = { ...FAST, totalTimeoutMs: 1_500 };

export async function startProductServer(
  providerUrl: string,
  env: Env = {},
  options: EanFetchOptions = FAST,
  /** Share another server's DATA_DIR (and so its SQLite file and blobs): two processes' worth of Kiln. */
  shareDataDir?: string,
  /** Replaces the configured job runner (BullMQ with a Redis prefix of the test's own). */
  runner?: (ctx: Context) => JobRunner,
): Promise<TestServer> {
  return startServer(
    { EAN_PROVIDER_URL: providerUrl, FETCH_ALLOWED_HOSTS: '127.0.0.1', ...env },
    {
      dataDir: shareDataDir,
      startJobs: true,
      prepare: (base) => {
        const ctx: Context = runner ? { ...base, jobs: runner(base) } : base;
        if (runner) base.onClose(() => ctx.jobs.stop(1000));
        // Before buildApp: the registration made while the app is built then keeps this one.
        registerProductImageJobs(ctx, options);
        return ctx;
      },
    },
  );
}

/** An EAN-13 with a correct GS1 check digit: `ean13(7)` is 4000000000075, a different code per number. */
export function ean13(n: number, prefix = '4'): string {
  const body = `${prefix}${String(n).padStart(11, '0')}`;
  let sum = 0;
  [...body].reverse().forEach((d, i) => (sum += Number(d) * (i % 2 === 0 ? 3 : 1)));
  return `${body}${(10 - (sum % 10)) % 10}`;
}

export interface JobView {
  job_id: string;
  type: string;
  status: string;
  progress: number;
  attempts: number;
  max_attempts: number;
  input: { ean_code: string; description: string | null };
  result: null | { ean_code: string; product_name: string | null; source_url: string; width: number; height: number; fetched_from_provider: boolean; urls: Record<string, string> };
  error: null | { code: string; detail: string };
  created_at: string;
  started_at: string | null;
  finished_at: string | null;
  user_id: string | null;
}

/** POSTs /api/v1/fetch-image and returns the status and body. */
export async function requestFetch(baseUrl: string, headers: Record<string, string>, body: unknown): Promise<{ status: number; body: Record<string, unknown> }> {
  const res = await fetch(`${baseUrl}/api/v1/fetch-image`, { method: 'POST', headers: { ...headers, 'content-type': 'application/json' }, body: JSON.stringify(body) });
  return { status: res.status, body: (await res.json()) as Record<string, unknown> };
}

/** Polls GET /api/v1/jobs/{id} until the job is finished (the API view, not the runner's). */
export async function waitForJob(baseUrl: string, headers: Record<string, string>, jobId: string, timeoutMs = 20_000): Promise<JobView> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const res = await fetch(`${baseUrl}/api/v1/jobs/${jobId}`, { headers });
    if (res.status !== 200) throw new Error(`GET job ${jobId}: ${res.status} ${await res.text()}`);
    const job = (await res.json()) as JobView;
    if (['completed', 'failed', 'cancelled'].includes(job.status)) return job;
    if (Date.now() > deadline) throw new Error(`job ${jobId} still ${job.status} after ${timeoutMs} ms`);
    await new Promise((r) => setTimeout(r, 25));
  }
}

export const ADMIN = { email: 'admin@example.com', password: 'admin-password-1' };

/** Logs the admin (from ADMIN_EMAIL / ADMIN_PASSWORD) in and returns its headers. */
export function adminHeaders(baseUrl: string): Promise<{ authorization: string }> {
  return loginHeaders(baseUrl, ADMIN.email, ADMIN.password);
}
