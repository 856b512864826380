// Which runner the Context builds, and that `kiln serve` with REDIS_URL only enqueues.
import { createServer, type AddressInfo, type Socket } from 'node:net';
import { Redis } from 'ioredis';
import { afterEach, describe, expect, it } from 'vitest';
import { createContext, type Context } from '../../../src/context.js';
import { tempDataDir, testConfig } from '../../helpers/config.js';
import { closedPort } from '../../helpers/redis.js';
import { dropRedisPrefix, makeRunner, newPrefix, sqliteStore, TEST_REDIS_URL } from './harness.js';
import { BullJobRunner, PermanentJobError } from '../../../src/platform/jobs/index.js';
import { within } from '../../../src/platform/inflight.js';
import { openDatabase } from '../../../src/platform/db/index.js';
import { systemClock } from '../../../src/clock.js';
import pino from 'pino';

const cleanups: Array<() => Promise<void> | void> = [];
afterEach(async () => {
  for (const c of cleanups.splice(0).reverse()) await c();
});

async function context(env: Record<string, string> = {}): Promise<Context> {
  const temp = tempDataDir();
  const ctx = await createContext(testConfig(temp.dir, env));
  cleanups.push(temp.cleanup, () => ctx.close());
  return ctx;
}

describe('the Context job runner', () => {
  it('is the local runner without REDIS_URL, and runs jobs once started', async () => {
    const ctx = await context();
    expect(ctx.jobs.mode).toBe('local');
    ctx.jobs.register('ping', async () => 'pong');
    await ctx.jobs.start();
    const job = await ctx.jobs.enqueue('ping', {}, { userId: null });
    expect(await ctx.jobs.waitFor(job.job_id, 10_000)).toMatchObject({ status: 'completed', result: 'pong' });
  });

  it('refuses to enqueue a kind nobody registered', async () => {
    const ctx = await context();
    await expect(ctx.jobs.enqueue('nobody', {}, { userId: null })).rejects.toThrow(/no handler is registered/);
  });

  it.skipIf(!TEST_REDIS_URL)(`is BullMQ with REDIS_URL; serve only enqueues, a worker runs${TEST_REDIS_URL ? '' : ' (skipped: TEST_REDIS_URL is not set)'}`, async () => {
    // The Context's runner writes under REDIS_PREFIX: one of the test's own, removed once the Context is closed.
    const own = newPrefix();
    cleanups.push(() => dropRedisPrefix(TEST_REDIS_URL as string, own));
    const ctx = await context({ REDIS_URL: TEST_REDIS_URL as string, REDIS_PREFIX: own });
    expect(ctx.jobs.mode).toBe('bullmq');
    const store = await sqliteStore();
    const prefix = newPrefix();
    const serve = new BullJobRunner({ db: store.db, log: pino({ level: 'silent' }), clock: systemClock }, { redisUrl: TEST_REDIS_URL as string, role: 'serve', concurrency: 2, prefix });
    const worker = makeRunner('bullmq', store.db, prefix);
    cleanups.push(() => store.close(), () => dropRedisPrefix(TEST_REDIS_URL as string, prefix), () => serve.stop(), () => worker.stop(1000));
    let ranIn = '';
    serve.register('where', async () => (ranIn = 'serve'));
    worker.register('where', async () => (ranIn = 'worker'));
    await serve.start();
    const job = await serve.enqueue('where', {}, { userId: null });
    await new Promise((r) => setTimeout(r, 300));
    expect(await serve.get(job.job_id)).toMatchObject({ status: 'queued' });
    await worker.start();
    expect(await serve.waitFor(job.job_id, 10_000)).toMatchObject({ status: 'completed', result: 'worker' });
    expect(ranIn).toBe('worker');
  });
});

describe.skipIf(!TEST_REDIS_URL)(`BullMQ and a finished job${TEST_REDIS_URL ? '' : ' (skipped: TEST_REDIS_URL is not set)'}`, () => {
  it('leaves nothing of it in Redis, completed or failed: the row is all there is', async () => {
    const store = await sqliteStore();
    const prefix = newPrefix();
    const worker = makeRunner('bullmq', store.db, prefix);
    cleanups.push(() => store.close(), () => dropRedisPrefix(TEST_REDIS_URL as string, prefix), () => worker.stop(1000));
    const redis = new Redis(TEST_REDIS_URL as string);
    cleanups.push(() => redis.quit().then(() => undefined));
    worker.register('fine', async () => 'done');
    worker.register('refused', async () => {
      throw new PermanentJobError('refused', 'Not this one.');
    });
    await worker.start();
    const done = await worker.enqueue('fine', {}, { userId: 'u1' });
    const failed = await worker.enqueue('refused', {}, { userId: 'u1' });
    expect(await worker.waitFor(done.job_id, 10_000)).toMatchObject({ status: 'completed', result: 'done' });
    expect(await worker.waitFor(failed.job_id, 10_000)).toMatchObject({ status: 'failed', error: { code: 'refused' } });
    const leftOf = async (jobId: string) => (await redis.keys(`${prefix}:jobs:*`)).filter((key) => key.includes(jobId));
    await expect.poll(async () => [...(await leftOf(done.job_id)), ...(await leftOf(failed.job_id))]).toEqual([]);
    expect(await redis.zcard(`${prefix}:jobs:completed`)).toBe(0);
    expect(await redis.zcard(`${prefix}:jobs:failed`)).toBe(0);
    // The rows stay, for GET /api/v1/jobs/{id} and the retention.
    expect((await store.db.kysely.selectFrom('jobs').select('job_id').execute()).map((r) => r.job_id).sort()).toEqual([done.job_id, failed.job_id].sort());
  });

  it('leaves nothing in Redis of a job BullMQ itself gave up on (every claim failed: the worker never reached the database)', async () => {
    const store = await sqliteStore();
    const prefix = newPrefix();
    const serve = new BullJobRunner({ db: store.db, log: pino({ level: 'silent' }), clock: systemClock }, { redisUrl: TEST_REDIS_URL as string, role: 'serve', concurrency: 1, prefix });
    // A worker whose database refuses every connection: each claim fails, and BullMQ counts an attempt each time.
    const nowhere = tempDataDir();
    const unreachable = openDatabase(`postgres://kiln@127.0.0.1:${await closedPort()}/kiln`, nowhere.dir);
    const worker = makeRunner('bullmq', unreachable, prefix, 1);
    cleanups.push(
      () => store.close(),
      nowhere.cleanup,
      () => unreachable.close().catch(() => undefined),
      () => dropRedisPrefix(TEST_REDIS_URL as string, prefix),
      () => serve.stop(),
      () => worker.stop(1000),
    );
    const redis = new Redis(TEST_REDIS_URL as string);
    cleanups.push(() => redis.quit().then(() => undefined));
    serve.register('unclaimable', async () => 'never run');
    worker.register('unclaimable', async () => 'never run');
    await serve.start();
    const job = await serve.enqueue('unclaimable', {}, { userId: 'u1', maxAttempts: 1 });
    await expect.poll(async () => (await redis.keys(`${prefix}:jobs:*`)).some((key) => key.endsWith(`:${job.job_id}`))).toBe(true);
    await worker.start();
    // BullMQ's attempts (the row's 1, the recoveries' 5 and one more) a second apart, then it fails the job and removes it.
    await expect.poll(async () => (await redis.keys(`${prefix}:jobs:*`)).filter((key) => key.includes(job.job_id)), { timeout: 20_000, interval: 200 }).toEqual([]);
    expect(await redis.zcard(`${prefix}:jobs:failed`)).toBe(0);
    // The row stays as it was, for a worker that reaches the database (the reconcile hands the job to Redis again).
    expect(await serve.get(job.job_id)).toMatchObject({ status: 'queued', attempts: 0 });
  }, 40_000);
});

describe('the job runner health check', () => {
  it('local: ok only while started', async () => {
    const store = await sqliteStore();
    cleanups.push(() => store.close());
    const runner = makeRunner('local', store.db, newPrefix());
    await expect(runner.healthCheck()).rejects.toThrow(/not running/);
    await runner.start();
    await expect(runner.healthCheck()).resolves.toBeUndefined();
    await runner.stop(1000);
    await expect(runner.healthCheck()).rejects.toThrow(/not running/);
  });

  it('BullMQ: a Redis that accepts connections but never answers fails the check within its bound', async () => {
    // A TCP port that takes the connection and says nothing: ioredis would wait on it indefinitely.
    const sockets = new Set<Socket>();
    const silent = createServer((s) => void sockets.add(s));
    await new Promise<void>((r) => silent.listen(0, '127.0.0.1', r));
    cleanups.push(async () => {
      for (const s of sockets) s.destroy();
      await new Promise((r) => silent.close(r));
    });
    const store = await sqliteStore();
    const { port } = silent.address() as AddressInfo;
    const runner = new BullJobRunner({ db: store.db, log: pino({ level: 'silent' }), clock: systemClock }, { redisUrl: `redis://127.0.0.1:${port}`, role: 'serve', concurrency: 1, prefix: newPrefix() });
    cleanups.push(() => store.close(), () => within(runner.stop(), 2000));
    // Only the check's own bound says this; without it the PING would wait on the silent port for good,
    // far past this test's timeout, so a check that is not bounded fails here by timing out.
    await expect(runner.healthCheck(300)).rejects.toThrow('Redis did not answer a PING in time');
  });

  it('BullMQ: with Redis unreachable, one enqueue waits for the handoff to fail; the next ones, for REDIS_BREAK_MS, are left to the reconcile at once', async () => {
    const store = await sqliteStore();
    const runner = new BullJobRunner({ db: store.db, log: pino({ level: 'silent' }), clock: systemClock }, { redisUrl: 'redis://127.0.0.1:1', role: 'serve', concurrency: 1, prefix: newPrefix() });
    cleanups.push(() => store.close(), () => within(runner.stop(), 2000));
    runner.register('noop', async () => 'done');
    const timed = async (): Promise<number> => {
      const started = Date.now();
      const job = await runner.enqueue('noop', {}, { userId: 'u1' });
      // Written either way: a worker's reconcile hands it to Redis later.
      expect(job.status).toBe('queued');
      return Date.now() - started;
    };
    // It gives up after its 2 s, not later: the request that enqueued is waiting on it.
    const first = await timed();
    expect(first).toBeGreaterThanOrEqual(1500);
    expect(first).toBeLessThan(3500);
    for (let i = 0; i < 3; i++) expect(await timed()).toBeLessThan(500);
    expect(await store.db.kysely.selectFrom('jobs').select('job_id').execute()).toHaveLength(4);
  });

  it('BullMQ: a closed port fails the check', async () => {
    const store = await sqliteStore();
    const runner = new BullJobRunner({ db: store.db, log: pino({ level: 'silent' }), clock: systemClock }, { redisUrl: 'redis://127.0.0.1:1', role: 'serve', concurrency: 1, prefix: newPrefix() });
    cleanups.push(() => store.close(), () => within(runner.stop(), 2000));
    await expect(runner.healthCheck(1000)).rejects.toThrow();
  });

  it.skipIf(!TEST_REDIS_URL)(`BullMQ: ok while Redis answers, not once stopped${TEST_REDIS_URL ? '' : ' (skipped: TEST_REDIS_URL is not set)'}`, async () => {
    const store = await sqliteStore();
    const prefix = newPrefix();
    const runner = new BullJobRunner({ db: store.db, log: pino({ level: 'silent' }), clock: systemClock }, { redisUrl: TEST_REDIS_URL as string, role: 'serve', concurrency: 1, prefix });
    cleanups.push(() => store.close(), () => dropRedisPrefix(TEST_REDIS_URL as string, prefix));
    await expect(runner.healthCheck()).resolves.toBeUndefined();
    await runner.stop();
    await expect(runner.healthCheck()).rejects.toThrow(/stopped/);
  });
});
