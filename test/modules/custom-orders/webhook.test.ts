import { createHmac, timingSafeEqual } from 'node:crypto';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { sql } from 'kysely';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { buildApp, type App } from '../../../src/app.js';
import { createContext, type Context } from '../../../src/context.js';
import { registerCustomOrderJobs, signBody, WEBHOOK_JOB, WEBHOOK_MAX_ATTEMPTS } from '../../../src/modules/custom-orders/webhook.js';
import { backoffDelay } from '../../../src/platform/jobs/registry.js';
import type { BaseRunner } from '../../../src/platform/jobs/runner.js';
import { tempDataDir, testConfig } from '../../helpers/config.js';
import { startServer } from '../../helpers/server.js';
import { registerUser } from '../../helpers/users.js';
import { ADMIN, createOrder, filePart, loginAdmin, photo } from './helpers.js';

const SECRET = 'webhook-secret-for-tests';

interface Delivery {
  body: string;
  signature: string | undefined;
}

/** A shop's webhook endpoint on 127.0.0.1 that answers 503 twice, then 204. */
function receiver(): Promise<{ url: string; deliveries: Delivery[]; close: () => Promise<void> }> {
  const deliveries: Delivery[] = [];
  const server = http.createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      deliveries.push({ body: Buffer.concat(chunks).toString('utf8'), signature: req.headers['x-kiln-signature'] as string | undefined });
      res.statusCode = deliveries.length <= 2 ? 503 : 204;
      res.end();
    });
  });
  return new Promise((resolve) => {
    server.listen(0, '127.0.0.1', () => {
      const { port } = server.address() as AddressInfo;
      resolve({ url: `http://127.0.0.1:${port}/hooks/kiln`, deliveries, close: () => new Promise((r) => server.close(() => r())) });
    });
  });
}

/** What a receiver does: recompute the HMAC of the raw body and compare in constant time. */
function verify(rawBody: string, header: string | undefined, secret: string): boolean {
  const expected = Buffer.from(`sha256=${createHmac('sha256', secret).update(rawBody).digest('hex')}`);
  const given = Buffer.from(header ?? '');
  return given.length === expected.length && timingSafeEqual(given, expected);
}

let hook: Awaited<ReturnType<typeof receiver>>;
let ctx: Context;
let app: App;
let url: string;
const temp = tempDataDir();

beforeAll(async () => {
  hook = await receiver();
  ctx = await createContext(
    testConfig(temp.dir, { ...ADMIN, WEBHOOK_URL: hook.url, WEBHOOK_SECRET: SECRET, FETCH_ALLOWED_HOSTS: '127.0.0.1' }),
  );
  // Registered before the app does it, with a short first retry; the contract's 30 s would make this test slow.
  registerCustomOrderJobs(ctx, { firstRetryMs: 200 });
  app = await buildApp(ctx);
  await app.listen({ host: '127.0.0.1', port: 0 });
  url = `http://127.0.0.1:${(app.server.address() as AddressInfo).port}`;
  await ctx.jobs.start();
});
afterAll(async () => {
  await app?.close();
  await ctx?.close();
  await hook?.close();
  temp.cleanup();
});

describe('status webhooks', () => {
  it('POSTs each status change, signed, retrying a failing receiver until it accepts', async () => {
    const customer = await registerUser(url, 'hooked');
    const order = await createOrder(url, customer.headers, [filePart(await photo(900))]);
    const admin = await loginAdmin(url);
    const res = await fetch(`${url}/api/images/orders/${order.order_id}/status`, {
      method: 'PUT',
      headers: { ...admin, 'content-type': 'application/json' },
      body: JSON.stringify({ status: 'in_review' }),
    });
    expect(res.status).toBe(200);
    const changedAt = ((await res.json()) as { order: { updated_at: string } }).order.updated_at;

    const page = await ctx.jobs.list({ all: true, type: WEBHOOK_JOB });
    const jobId = page.jobs[0]?.job_id ?? '';
    const job = await ctx.jobs.waitFor(jobId, 20_000);
    expect(job).toMatchObject({ status: 'completed', attempts: 3, max_attempts: WEBHOOK_MAX_ATTEMPTS });

    expect(hook.deliveries).toHaveLength(3);
    for (const d of hook.deliveries) {
      expect(verify(d.body, d.signature, SECRET)).toBe(true);
      expect(verify(d.body, d.signature, 'another-secret')).toBe(false);
      expect(JSON.parse(d.body)).toEqual({ event: 'order.status_changed', order_id: order.order_id, status: 'in_review', at: changedAt });
    }
    // Doubling backoff: 200 ms before the second attempt, 400 ms before the third, as registered
    // (that the runner waits a retry's delay out is the job system's own test).
    const spec = (ctx.jobs as BaseRunner).registry.require(WEBHOOK_JOB);
    expect([1, 2].map((attempt) => backoffDelay(spec.backoff, attempt))).toEqual([200, 400]);
  });

  it('commits a status change and its webhook job together: when the job cannot be written, the change is refused and not kept', async () => {
    const customer = await registerUser(url, 'atomic');
    const order = await createOrder(url, customer.headers, [filePart(await photo(700))]);
    const admin = await loginAdmin(url);
    const move = (status: string) =>
      fetch(`${url}/api/images/orders/${order.order_id}/status`, { method: 'PUT', headers: { ...admin, 'content-type': 'application/json' }, body: JSON.stringify({ status }) });
    const webhookJobs = async () =>
      (await ctx.db.kysely.selectFrom('jobs').select('input').where('type', '=', WEBHOOK_JOB).execute()).filter((j) => j.input.includes(order.order_id));

    // The database refuses webhook jobs (as a connection lost between the two writes would fail the second).
    await sql`create trigger refuse_webhooks before insert on jobs when new.type = 'webhook' begin select raise(abort, 'no webhooks now'); end`.execute(ctx.db.kysely);
    try {
      expect((await move('in_review')).status).toBe(500);
    } finally {
      await sql`drop trigger refuse_webhooks`.execute(ctx.db.kysely);
    }
    const kept = await fetch(`${url}/api/images/orders/${order.order_id}`, { headers: admin });
    expect(((await kept.json()) as { order: { status: string; history: unknown[] } }).order).toMatchObject({ status: 'pending', history: [{ status: 'pending' }] });
    expect(await webhookJobs()).toEqual([]);

    // Asked again, the change and its announcement are both there the moment it is answered.
    expect((await move('in_review')).status).toBe(200);
    const jobs = await webhookJobs();
    expect(jobs).toHaveLength(1);
    expect(JSON.parse(jobs[0]?.input ?? 'null')).toMatchObject({ event: 'order.status_changed', order_id: order.order_id, status: 'in_review' });
  });

  it('queues no webhook when WEBHOOK_URL is not set: the change is kept, nothing is to be sent', async () => {
    const plain = await startServer({ ...ADMIN });
    try {
      const customer = await registerUser(plain.url, 'unhooked');
      const order = await createOrder(plain.url, customer.headers, [filePart(await photo(700))]);
      const res = await fetch(`${plain.url}/api/images/orders/${order.order_id}/status`, {
        method: 'PUT',
        headers: { ...(await loginAdmin(plain.url)), 'content-type': 'application/json' },
        body: JSON.stringify({ status: 'in_review' }),
      });
      expect(res.status).toBe(200);
      expect(((await res.json()) as { order: { status: string } }).order.status).toBe('in_review');
      expect(await plain.ctx.db.kysely.selectFrom('jobs').select('job_id').where('type', '=', WEBHOOK_JOB).execute()).toEqual([]);
    } finally {
      await plain.close();
    }
  });

  it('keeps the contract\'s schedule by default: first retry within 30 s, doubling, 8 attempts', async () => {
    // Through the app's own wiring (modules/jobs.ts, called while the app is built), not a test registration.
    const plain = await startServer();
    try {
      const spec = (plain.ctx.jobs as BaseRunner).registry.require(WEBHOOK_JOB);
      expect(spec.maxAttempts).toBe(8);
      // "The first retry within 30 s": the delay, plus the runner's poll and a busy moment, stays under it.
      expect(spec.backoff.delayMs).toBeLessThanOrEqual(25_000);
      expect(backoffDelay(spec.backoff, 2)).toBe(2 * spec.backoff.delayMs);
    } finally {
      await plain.close();
    }
    expect(signBody('k', '{}')).toBe(`sha256=${createHmac('sha256', 'k').update('{}').digest('hex')}`);
  });
});
