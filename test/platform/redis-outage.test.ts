/**
 * Jobs and the cache when their Redis stops answering or cannot be reached:
 * a request never waits on Redis for good. An enqueue answers once the row
 * is written (a worker's reconcile hands the job to Redis later); a cache
 * call fails within its command timeout and the caller reads the database.
 * Everything this Kiln writes to the real Redis is under a REDIS_PREFIX of
 * the test's own, removed afterwards.
 */
import { Redis } from 'ioredis';
import { afterEach, describe, expect, it } from 'vitest';
import { REDIS_BREAK_MESSAGE, REDIS_BREAK_MS, REDIS_COMMAND_TIMEOUT_MS } from '../../src/platform/redis.js';
import { closedPort, relayTo } from '../helpers/redis.js';
import type { TcpRelay } from '../helpers/relay.js';
import { startServer, type TestServer } from '../helpers/server.js';
import { registerUser } from '../helpers/users.js';
import { dropRedisPrefix, newPrefix } from './jobs/harness.js';

const REDIS_URL = process.env.TEST_REDIS_URL;
const cleanups: Array<() => Promise<void> | void> = [];

afterEach(async () => {
  for (const cleanup of cleanups.splice(0).reverse()) await cleanup();
});

/** POST /api/v1/fetch-image for a new user: the status, the job's status, and how long the answer took. */
async function askForPicture(server: TestServer): Promise<{ status: number; jobStatus: unknown; ms: number }> {
  const user = await registerUser(server.url);
  const started = Date.now();
  const res = await fetch(`${server.url}/api/v1/fetch-image`, {
    method: 'POST',
    headers: { ...user.headers, 'content-type': 'application/json' },
    body: JSON.stringify({ ean_code: '4006381333931' }),
  });
  const body = (await res.json()) as { status?: unknown };
  return { status: res.status, jobStatus: body.status, ms: Date.now() - started };
}

/**
 * A server whose Redis is behind a relay (passing bytes until the test says otherwise), under a
 * prefix of its own; closed before the relay is (cleanups run in reverse), so its Redis clients
 * never wait on a frozen relay while closing.
 */
async function serverBehindRelay(env: Record<string, string> = {}): Promise<{ server: TestServer; relay: TcpRelay; prefix: string }> {
  const prefix = newPrefix();
  cleanups.push(() => dropRedisPrefix(REDIS_URL as string, prefix));
  const relay = await relayTo(new URL(REDIS_URL as string));
  cleanups.push(() => relay.close());
  relay.release();
  const server = await startServer({ REDIS_URL: relay.url, REDIS_PREFIX: prefix, ...env });
  cleanups.push(() => server.close());
  // Working: a cache write goes through.
  await expect.poll(async () => server.ctx.cache.set('probe', 1).then(() => true, () => false), { timeout: 10_000 }).toBe(true);
  return { server, relay, prefix };
}

describe.skipIf(!REDIS_URL)('jobs and the cache with a Redis that stops answering', () => {
  it('keeps its keys under REDIS_PREFIX, then answers an enqueue and fails a cache call in bounded time once Redis hangs', async () => {
    const { server, relay, prefix } = await serverBehindRelay({ FETCH_ALLOWED_HOSTS: '127.0.0.1', EAN_PROVIDER_URL: `http://127.0.0.1:${await closedPort()}` });
    // The cache and the queue write under the prefix, and nothing under the default one.
    expect(await askForPicture(server)).toMatchObject({ status: 202, jobStatus: 'queued' });
    const direct = new Redis(REDIS_URL as string);
    cleanups.push(() => direct.quit().then(() => undefined));
    const keys = await direct.keys(`${prefix}:*`);
    expect(keys.some((k) => k.startsWith(`${prefix}:cache:`))).toBe(true);
    expect(keys.some((k) => k.startsWith(`${prefix}:jobs:`))).toBe(true);

    // Redis stops answering. Without bounds each of these would wait for good, far past the test's timeout.
    relay.freeze();
    const started = Date.now();
    await expect(server.ctx.cache.get('probe')).rejects.toThrow(/timed out/i);
    expect(Date.now() - started).toBeLessThan(REDIS_COMMAND_TIMEOUT_MS + 2000);
    const asked = await askForPicture(server);
    expect(asked).toMatchObject({ status: 202, jobStatus: 'queued' });
  });

  it('asks a Redis that timed out again only after a break, and uses it again once it answers', async () => {
    const { server, relay } = await serverBehindRelay();
    const cache = server.ctx.cache;

    // Held, not frozen: what was sent while Redis hung arrives once it answers again, so replies stay in order.
    relay.hold();
    let started = Date.now();
    await expect(cache.get('probe')).rejects.toThrow(/timed out/i);
    expect(Date.now() - started).toBeGreaterThanOrEqual(REDIS_COMMAND_TIMEOUT_MS - 50);
    const brokeAt = Date.now();
    // Within the break every call fails at once, without a command timeout's wait each.
    started = Date.now();
    for (let i = 0; i < 5; i++) await expect(cache.get('probe')).rejects.toThrow(REDIS_BREAK_MESSAGE);
    expect(Date.now() - started).toBeLessThan(REDIS_COMMAND_TIMEOUT_MS);

    relay.release();
    // Still within the break: Redis answers again, but is not asked yet.
    await expect(cache.get('probe')).rejects.toThrow(REDIS_BREAK_MESSAGE);
    await new Promise((resolve) => setTimeout(resolve, Math.max(0, brokeAt + REDIS_BREAK_MS + 100 - Date.now())));
    expect(await cache.get('probe')).toBe(1);
  });

  it('fails a cache call when Redis cannot be reached without waiting for reconnects', async () => {
    const server = await startServer({ REDIS_URL: `redis://127.0.0.1:${await closedPort()}` });
    cleanups.push(() => server.close());
    // ioredis's own refusal while not connected, answered only with its offline queue off.
    await expect(server.ctx.cache.get('probe')).rejects.toThrow("Stream isn't writeable and enableOfflineQueue options is false");
  });
});
