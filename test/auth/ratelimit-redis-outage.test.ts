/**
 * The rate limiter with its Redis store down: requests must be let through
 * at once, not after ioredis has spent seconds reconnecting. "At once" is
 * shown by why a counter update failed (the log's error), never by a
 * measured duration; where the alternative is waiting for good, a request
 * that waited would time the test out.
 */
import { randomInt } from 'node:crypto';
import { afterEach, describe, expect, it } from 'vitest';
import { REDIS_BREAK_MESSAGE } from '../../src/platform/redis.js';
import { logDirectory as sharedLogDirectory } from '../helpers/logs.js';
import { closedPort, relayTo } from '../helpers/redis.js';
import { startServer } from '../helpers/server.js';
import { call } from './helpers.js';

const REDIS_URL = process.env.TEST_REDIS_URL;
const cleanups: Array<() => Promise<void> | void> = [];

afterEach(async () => {
  for (const cleanup of cleanups.splice(0)) await cleanup();
});

/** One GET: its status and the requests its rate-limit window has left (the whole limit when it went through uncounted). */
async function get(url: string, path: string, headers: Record<string, string> = {}): Promise<{ status: number; remaining: string | null }> {
  const res = await call(url, 'GET', path, { headers });
  return { status: res.status, remaining: res.headers.get('x-ratelimit-remaining') };
}

const UNCOUNTED = 'rate limit store (Redis) failed: request let through uncounted';
/**
 * ioredis's refusal of a command while not connected, which it answers at
 * once only with its offline queue off; with the queue on, the command would
 * wait for a connection and fail later (MaxRetriesPerRequestError) or never.
 */
const REFUSED_AT_ONCE = "Stream isn't writeable and enableOfflineQueue options is false";

type LogLine = { msg: string; level: number; err?: { message?: string } };

/** A LOG_FILE directory of the test's own, removed after it; `lines()` reads it once the server is closed. */
function logDirectory(): { env: Record<string, string>; lines(): LogLine[] } {
  const log = sharedLogDirectory<LogLine>();
  cleanups.push(() => log.remove());
  return log;
}

/** Seven requests, more than the limit of 5, to a Kiln whose REDIS_URL is a closed port: their statuses and the log's uncounted lines. */
async function burstWithRedisDown(): Promise<{ statuses: number[]; uncounted: LogLine[] }> {
  const log = logDirectory();
  const s = await startServer({ REDIS_URL: `redis://127.0.0.1:${await closedPort()}`, RATE_LIMIT_DEFAULT: '5', ...log.env });
  const statuses: number[] = [];
  try {
    for (let i = 0; i < 7; i++) statuses.push((await get(s.url, '/users/me')).status);
  } finally {
    // pino writes through a worker thread: only after close is every line on disk.
    await s.close();
  }
  return { statuses, uncounted: log.lines().filter((l) => l.msg === UNCOUNTED) };
}

describe('rate limits with Redis unreachable', () => {
  it('a rate-limited request is let through at once when REDIS_URL points at a closed port', async () => {
    const { statuses, uncounted } = await burstWithRedisDown();
    // More requests than the limit: with no counter to consult, none is refused.
    expect(statuses).toEqual(Array(7).fill(401));
    // The counter update was refused on the spot for want of a connection, not queued until ioredis gave up reconnecting.
    expect(uncounted[0]?.err?.message).toBe(REFUSED_AT_ONCE);
  });

  it('says in the log, once for a burst, that requests went through uncounted', async () => {
    const { statuses, uncounted } = await burstWithRedisDown();
    expect(statuses).toEqual(Array(7).fill(401));
    expect(uncounted).toHaveLength(1);
    expect(uncounted[0]?.level).toBe(40);
  });
});

describe.skipIf(!REDIS_URL)('rate limits with a Redis that stops answering', () => {
  it('lets requests through at once before the connection is ready, counts once it is, and lets them through at once when Redis hangs', async () => {
    // A made-up client address (TRUST_PROXY=1 reads it from X-Forwarded-For); the counters live under the server's own
    // REDIS_PREFIX, which closing it removes (test/helpers/server.ts).
    const from = { 'x-forwarded-for': `10.${randomInt(256)}.${randomInt(256)}.${randomInt(1, 255)}` };
    const relay = await relayTo(new URL(REDIS_URL as string));
    cleanups.push(() => relay.close());
    const log = logDirectory();
    const s = await startServer({ REDIS_URL: relay.url, RATE_LIMIT_DEFAULT: '5', TRUST_PROXY: '1', ...log.env });
    try {
      // Before the connection is ready (the relay holds the handshake back, and releases it only after
      // these requests), requests are let through uncounted, past the limit.
      for (let i = 0; i < 6; i++) expect(await get(s.url, '/users/me', from)).toEqual({ status: 401, remaining: '5' });
      // Once connected, the counter in Redis counts each request; none of the earlier ones reached it.
      relay.release();
      await expect.poll(async () => (await get(s.url, '/users/me', from)).remaining, { timeout: 20_000 }).toBe('4');
      expect(await get(s.url, '/users/me', from)).toEqual({ status: 401, remaining: '3' });

      // Redis stops answering: without a command timeout each request would wait on it for good, far past this test's timeout.
      relay.freeze();
      for (let i = 0; i < 3; i++) expect(await get(s.url, '/users/me', from)).toEqual({ status: 401, remaining: '5' });
    } finally {
      // The relay first (the server's other Redis clients would wait on a frozen one while closing);
      // pino writes through a worker thread: only after close is every line on disk.
      await relay.close();
      await s.close();
    }
    // The first request's counter update (the log says it once for a burst) was refused on the spot, not queued until the
    // connection was ready: by ioredis for want of a ready connection or, on a loaded machine where these requests took
    // longer than the command timeout, by the breaker, which the held ready check (INFO) timing out has opened.
    expect([REFUSED_AT_ONCE, REDIS_BREAK_MESSAGE]).toContain(log.lines().find((l) => l.msg === UNCOUNTED)?.err?.message);
  });
});
