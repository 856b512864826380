/**
 * What counts as delivered and what is retried: a 2xx is delivered whatever
 * its body; a 404, a timeout and a 5xx are retried; a job gives up after
 * WEBHOOK_MAX_ATTEMPTS; a receiver on the loopback not listed in
 * FETCH_ALLOWED_HOSTS is never contacted. Each case runs its own Kiln against its own local
 * receiver, with the job's delays shortened (registerCustomOrderJobs' test
 * options) so eight attempts take about a second.
 */
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { afterEach, describe, expect, it } from 'vitest';
import { registerCustomOrderJobs, WEBHOOK_JOB, WEBHOOK_MAX_ATTEMPTS, type WebhookJobOptions } from '../../../src/modules/custom-orders/webhook.js';
import type { Job } from '../../../src/platform/jobs/types.js';
import { logDirectory as sharedLogDirectory } from '../../helpers/logs.js';
import { startServer, type TestServer } from '../../helpers/server.js';
import { registerUser } from '../../helpers/users.js';
import { ADMIN, createOrder, filePart, loginAdmin, photo } from './helpers.js';

/** How the receiver answers its n-th request (1-based). */
type Answer = (res: http.ServerResponse, n: number) => void;

interface Receiver {
  url: string;
  /** When each delivery arrived (ms since the epoch). */
  deliveries: number[];
  /** Connections opened to the receiver, complete requests or not. */
  readonly connections: number;
  close(): Promise<void>;
}

function receiver(answer: Answer): Promise<Receiver> {
  const deliveries: number[] = [];
  let connections = 0;
  const server = http.createServer((req, res) => {
    req.resume();
    req.on('end', () => {
      deliveries.push(Date.now());
      answer(res, deliveries.length);
    });
  });
  server.on('connection', () => connections++);
  return new Promise((resolve) => {
    server.listen(0, '127.0.0.1', () => {
      const { port } = server.address() as AddressInfo;
      resolve({
        url: `http://127.0.0.1:${port}/hooks/kiln`,
        deliveries,
        get connections() {
          return connections;
        },
        close: () =>
          new Promise((r) => {
            server.closeAllConnections(); // a hanging answer must not keep the receiver open
            server.close(() => r());
          }),
      });
    });
  });
}

const open: Array<() => Promise<void>> = [];
afterEach(async () => {
  for (const close of open.splice(0).reverse()) await close();
});

/**
 * A receiver answering as told and a Kiln sending it webhooks with the given
 * (short) job options; `env` adds to or overrides the Kiln's (127.0.0.1 is in
 * FETCH_ALLOWED_HOSTS unless it says otherwise).
 */
async function setUp(answer: Answer, options: WebhookJobOptions, env: Record<string, string> = {}): Promise<{ hook: Receiver; server: TestServer }> {
  const hook = await receiver(answer);
  open.push(() => hook.close());
  const server = await startServer(
    { ...ADMIN, WEBHOOK_URL: hook.url, WEBHOOK_SECRET: 'webhook-secret-for-tests', FETCH_ALLOWED_HOSTS: '127.0.0.1', ...env },
    { prepare: (ctx) => registerCustomOrderJobs(ctx, options), startJobs: true },
  );
  let closed: Promise<void> | undefined;
  // Closing twice (a test that closes early to read its log, then afterEach) closes once.
  const close = () => (closed ??= server.close());
  open.push(close);
  return { hook, server: { ...server, close } };
}

/** Moves a fresh order to in_review through the API and waits for its webhook job to end. */
async function deliverOneChange(server: TestServer): Promise<Job> {
  const customer = await registerUser(server.url, 'hooked');
  const order = await createOrder(server.url, customer.headers, [filePart(await photo(900))]);
  const res = await fetch(`${server.url}/api/images/orders/${order.order_id}/status`, {
    method: 'PUT',
    headers: { ...(await loginAdmin(server.url)), 'content-type': 'application/json' },
    body: JSON.stringify({ status: 'in_review' }),
  });
  expect(res.status).toBe(200);
  const { jobs } = await server.ctx.jobs.list({ all: true, type: WEBHOOK_JOB });
  expect(jobs).toHaveLength(1);
  return server.ctx.jobs.waitFor(jobs[0]?.job_id ?? '', 20_000);
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

interface LogLine {
  msg: string;
  level: number;
  code?: string;
  jobId?: string;
  attempt?: number;
  delayMs?: number;
}

/** A LOG_FILE directory (warnings and up unless LOG_LEVEL is overridden) removed after the test; read it once the server is closed. */
function logDirectory(): { env: Record<string, string>; lines(): LogLine[] } {
  const log = sharedLogDirectory<LogLine>();
  open.push(async () => log.remove());
  return log;
}

describe('webhook delivery', () => {
  it.each([
    ['with Content-Length', (res: http.ServerResponse) => res.writeHead(200, { 'content-type': 'text/html' }).end(Buffer.alloc(100 * 1024, 'a'))],
    [
      'chunked',
      (res: http.ServerResponse) => {
        res.writeHead(200, { 'content-type': 'text/plain' });
        for (let i = 0; i < 4; i++) res.write(Buffer.alloc(50 * 1024, 'b'));
        res.end();
      },
    ],
  ])('counts a 2xx with a 100 KB+ body (%s) as delivered, once, without retrying', async (_kind, answer) => {
    const { hook, server } = await setUp(answer, { firstRetryMs: 20 });
    const job = await deliverOneChange(server);
    expect(job).toMatchObject({ status: 'completed', attempts: 1, error: null });
    await sleep(200); // a retry, were one scheduled, would have come by now
    expect(hook.deliveries).toHaveLength(1);
  });

  it('counts a 2xx whose chunked body stalls before its first byte as delivered at its headers, without retrying', async () => {
    // 200 and its headers at once; the body never starts and never ends: only Kiln can end the request.
    let hungUp!: () => void;
    const kilnHungUp = new Promise<void>((resolve) => (hungUp = resolve));
    const stall: Answer = (res) => {
      res.writeHead(200, { 'content-type': 'text/plain', 'transfer-encoding': 'chunked' });
      res.flushHeaders();
      res.once('close', hungUp);
    };
    // A delivery timeout far past this test's own: an attempt that waited for the body would still be
    // running when deliverOneChange stops waiting (20 s), instead of completing at the headers.
    const { hook, server } = await setUp(stall, { firstRetryMs: 20, timeoutMs: 10 * 60_000 });
    const job = await deliverOneChange(server);
    expect(job).toMatchObject({ status: 'completed', attempts: 1, error: null, result: { status: 200 } });
    await kilnHungUp; // the body was dropped unread
    await sleep(200); // a retry, were one scheduled, would have come by now
    expect(hook.deliveries).toHaveLength(1);
  });

  it('retries a 404 answer (4xx included) and completes once the receiver accepts', async () => {
    const { hook, server } = await setUp((res, n) => res.writeHead(n === 1 ? 404 : 204).end(), { firstRetryMs: 50 });
    const job = await deliverOneChange(server);
    expect(job).toMatchObject({ status: 'completed', attempts: 2 });
    expect(hook.deliveries).toHaveLength(2);
  });

  it('retries a receiver that does not answer within the delivery timeout', async () => {
    const log = logDirectory();
    let hungUp!: () => void;
    const kilnHungUp = new Promise<void>((resolve) => (hungUp = resolve));
    // The first request is never answered (until Kiln gives up on it); the second is.
    const answer: Answer = (res, n) => {
      if (n > 1) res.writeHead(204).end();
      else res.once('close', hungUp);
    };
    const { hook, server } = await setUp(answer, { firstRetryMs: 20, timeoutMs: 300 }, { ...log.env, LOG_LEVEL: 'info' });
    const job = await deliverOneChange(server);
    expect(job).toMatchObject({ status: 'completed', attempts: 2 });
    expect(hook.deliveries).toHaveLength(2);
    await kilnHungUp;
    // The first attempt ended as webhook_timeout, the delivery's own timeout: the job's limit behind
    // it (5 s more) would have ended it as `timeout`. pino writes through a worker thread: close first.
    await server.close();
    const retried = log.lines().filter((l) => l.msg === 'job will be retried' && l.jobId === job.job_id);
    expect(retried).toEqual([expect.objectContaining({ code: 'webhook_timeout', attempt: 1 })]);
  });

  it(`gives up after ${WEBHOOK_MAX_ATTEMPTS} attempts, with doubling delays between them`, async () => {
    const firstRetryMs = 10;
    const log = logDirectory();
    const { hook, server } = await setUp((res) => res.writeHead(500).end(), { firstRetryMs }, { ...log.env, LOG_LEVEL: 'info' });
    const job = await deliverOneChange(server);
    expect(job).toMatchObject({ status: 'failed', attempts: WEBHOOK_MAX_ATTEMPTS, max_attempts: WEBHOOK_MAX_ATTEMPTS, error: { code: 'webhook_http_status' } });
    await sleep(300); // nothing more comes after giving up
    expect(hook.deliveries).toHaveLength(WEBHOOK_MAX_ATTEMPTS);
    // The delays the job asked for between attempts, 10, 20, 40 … 640 ms, as the runner logged them
    // (that the runner waits them out is the job system's own test). pino writes through a worker thread: close first.
    await server.close();
    const delays = log.lines().filter((l) => l.msg === 'job will be retried' && l.jobId === job.job_id).map((l) => l.delayMs);
    expect(delays).toEqual(Array.from({ length: WEBHOOK_MAX_ATTEMPTS - 1 }, (_, i) => firstRetryMs * 2 ** i));
  });

  it('is retried, not failed for good, by a process without WEBHOOK_URL (one of several sharing a database)', async () => {
    // This process has no webhook settings; another one, configured, enqueued the delivery.
    const server = await startServer({}, { prepare: (ctx) => registerCustomOrderJobs(ctx, { firstRetryMs: 10 }), startJobs: true });
    open.push(() => server.close());
    const payload = { event: 'order.status_changed', order_id: 'o1', status: 'in_review', at: new Date().toISOString() };
    const { job_id } = await server.ctx.jobs.enqueue(WEBHOOK_JOB, payload, { userId: null });
    const job = await server.ctx.jobs.waitFor(job_id, 20_000);
    expect(job).toMatchObject({ status: 'failed', attempts: WEBHOOK_MAX_ATTEMPTS, error: { code: 'webhook_not_configured' } });
  });

  it('sends nothing to a receiver on 127.0.0.1 that FETCH_ALLOWED_HOSTS does not list: the job fails at once as webhook_blocked_address, with a warning', async () => {
    const log = logDirectory();
    const { hook, server } = await setUp((res) => res.writeHead(204).end(), { firstRetryMs: 10 }, { FETCH_ALLOWED_HOSTS: '', ...log.env });
    expect(server.ctx.config.fetchAllowedHosts).toEqual([]);
    // The status change itself stands (deliverOneChange checks its 200); only the notification is refused.
    const job = await deliverOneChange(server);
    expect(job).toMatchObject({ status: 'failed', attempts: 1, error: { code: 'webhook_blocked_address' } });
    expect(job.error?.detail).toContain('127.0.0.1 is not a public address');
    expect(job.error?.detail).toContain('FETCH_ALLOWED_HOSTS');
    await sleep(200); // a retry, were one scheduled, would have come by now
    expect(hook.deliveries).toEqual([]);
    expect(hook.connections).toBe(0);
    // pino writes through a worker thread: only after close is every line on disk.
    await server.close();
    const warnings = log.lines().filter((l) => l.code === 'webhook_blocked_address');
    expect(warnings).toHaveLength(1);
    expect(warnings[0]).toMatchObject({ level: 40, jobId: job.job_id });
    expect(warnings[0]?.msg).toContain('FETCH_ALLOWED_HOSTS');
  });
});
