// Which runner the Context builds, and that `kiln serve` with REDIS_URL only enqueues.
import { createServer, type AddressInfo, type Socket } from 'node:net';
import { afterEach, describe, expect, it } from 'vitest';
import { createContext, type Context } from '../../../src/context.js';
import { tempDataDir, testConfig } from '../../helpers/config.js';
import { dropRedisPrefix, makeRunner, newPrefix, sqliteStore, TEST_REDIS_URL } from './harness.js';
import { BullJobRunner } from '../../../src/platform/jobs/index.js';
import { within } from '../../../src/platform/inflight.js';
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
    expect(await timed()).toBeGreaterThanOrEqual(1500);
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
