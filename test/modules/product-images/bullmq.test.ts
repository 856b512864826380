import { randomBytes } from 'node:crypto';
import { Redis } from 'ioredis';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Context } from '../../../src/context.js';
import { BullJobRunner } from '../../../src/platform/jobs/index.js';
import { registerUser, type TestUser } from '../../helpers/users.js';
import type { TestServer } from '../../helpers/server.js';
import { startFakeProvider, type FakeProvider } from './fake-provider.js';
import { ean13, requestFetch, startProductServer, waitForJob } from './server.js';

const REDIS_URL = process.env.TEST_REDIS_URL;

// With REDIS_URL the API process only enqueues and `kiln worker` processes run the jobs:
// here an API Kiln and a worker Kiln sharing one DATA_DIR and a Redis prefix of their own.
describe.skipIf(!REDIS_URL)('ean_fetch through BullMQ (API enqueues, a worker runs)', () => {
  const prefix = `kiln-test-${randomBytes(5).toString('hex')}`;
  const bull = (role: 'serve' | 'worker') => (ctx: Context) =>
    new BullJobRunner({ db: ctx.db, log: ctx.log, clock: ctx.clock }, { redisUrl: REDIS_URL as string, role, concurrency: 2, prefix, lockDurationMs: 2000, stalledIntervalMs: 1000 });
  let provider: FakeProvider;
  let api: TestServer;
  let worker: TestServer;
  let users: TestUser[];

  beforeAll(async () => {
    provider = await startFakeProvider();
    api = await startProductServer(provider.url, {}, undefined, undefined, bull('serve'));
    worker = await startProductServer(provider.url, {}, undefined, api.dataDir, bull('worker'));
    users = await Promise.all(['alice', 'bob', 'carol'].map((n) => registerUser(api.url, n)));
  });
  afterAll(async () => {
    await worker?.close();
    await api?.close();
    await provider?.close();
    if (REDIS_URL) {
      const redis = new Redis(REDIS_URL);
      const keys = await redis.keys(`${prefix}:*`);
      if (keys.length > 0) await redis.del(...keys);
      redis.disconnect();
    }
  });

  it('completes, and the picture is served by the API process', async () => {
    const [alice] = users as [TestUser];
    const code = ean13(700);
    provider.products.set(code, { kind: 'ok', name: 'Queued', image: '/img/rocket.jpg' });
    const { status, body } = await requestFetch(api.url, alice.headers, { ean_code: code });
    expect(status).toBe(202);
    const job = await waitForJob(api.url, alice.headers, body.job_id as string);
    expect(job).toMatchObject({ status: 'completed', attempts: 1, result: { fetched_from_provider: true } });
    const file = await fetch(`${api.url}/api/v1/images/${code}/file?size=thumb`, { headers: alice.headers });
    expect(file.status).toBe(200);
  });

  it('asks the provider once for users asking at once', async () => {
    const code = ean13(701);
    provider.products.set(code, { kind: 'slow', delayMs: 500, name: 'Shared', image: '/img/rocket.jpg' });
    const answers = await Promise.all(users.map((u) => requestFetch(api.url, u.headers, { ean_code: code })));
    const jobs = await Promise.all(users.map((u, i) => waitForJob(api.url, u.headers, answers[i]?.body.job_id as string)));
    expect(jobs.map((j) => j.status)).toEqual(['completed', 'completed', 'completed']);
    expect(provider.productHits(code)).toBe(1);
  });

  it('retries 503 with backoff: completed on attempt 3', async () => {
    const [, bob] = users as [TestUser, TestUser];
    const code = ean13(702);
    provider.products.set(code, { kind: 'flaky', failures: 2, name: 'Flaky', image: '/img/rocket.jpg' });
    const { body } = await requestFetch(api.url, bob.headers, { ean_code: code });
    expect(await waitForJob(api.url, bob.headers, body.job_id as string)).toMatchObject({ status: 'completed', attempts: 3 });
    expect(provider.productHits(code)).toBe(3);
  });

  it('fails a missing product at once', async () => {
    const [, , carol] = users as [TestUser, TestUser, TestUser];
    const code = ean13(703);
    const { body } = await requestFetch(api.url, carol.headers, { ean_code: code });
    expect(await waitForJob(api.url, carol.headers, body.job_id as string)).toMatchObject({ status: 'failed', attempts: 1, error: { code: 'not_found' } });
  });
});
