/**
 * The rate limiter with its Redis store down: requests must be let through
 * at once, not after ioredis has spent seconds reconnecting.
 */
import { randomInt } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { createServer, connect, type Server, type Socket } from 'node:net';
import type { AddressInfo } from 'node:net';
import { Redis } from 'ioredis';
import { afterEach, describe, expect, it } from 'vitest';
import { RATE_LIMIT_NAMESPACE } from '../../src/auth/ratelimit.js';
import { readLogLines } from '../helpers/logs.js';
import { startServer, type TestServer } from '../helpers/server.js';
import { call } from './helpers.js';

const REDIS_URL = process.env.TEST_REDIS_URL;
const servers: TestServer[] = [];
const cleanups: Array<() => Promise<void> | void> = [];

async function serve(env: Record<string, string>): Promise<TestServer> {
  const s = await startServer(env);
  servers.push(s);
  return s;
}
afterEach(async () => {
  // The relay goes first: a server's other Redis clients (cache, jobs) would wait on a frozen one while closing.
  for (const cleanup of cleanups.splice(0)) await cleanup();
  await Promise.all(servers.splice(0).map((s) => s.close()));
});

/** A port nothing listens on: bound for a moment, then released. */
async function closedPort(): Promise<number> {
  const server = createServer();
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as AddressInfo;
  await new Promise<void>((resolve) => server.close(() => resolve()));
  return port;
}

/** Milliseconds one GET takes, and its status. */
async function timed(url: string, path: string, headers: Record<string, string> = {}): Promise<{ ms: number; status: number; remaining: string | null }> {
  const started = performance.now();
  const res = await call(url, 'GET', path, { headers });
  return { ms: performance.now() - started, status: res.status, remaining: res.headers.get('x-ratelimit-remaining') };
}

/**
 * A TCP relay to a real Redis. It starts holding back what clients send (a
 * connection that is not ready yet) until release(); once frozen it passes
 * nothing on any more, like a Redis that hangs or a network that drops packets.
 */
async function relayTo(target: URL): Promise<{ url: string; release(): void; freeze(): void; close(): Promise<void> }> {
  let held: Array<() => void> | null = [];
  let frozen = false;
  const sockets = new Set<Socket>();
  const server: Server = createServer((client) => {
    const upstream = connect(Number(target.port || 6379), target.hostname);
    sockets.add(client).add(upstream);
    client.on('data', (chunk) => {
      if (frozen) return;
      if (held) held.push(() => upstream.write(chunk));
      else upstream.write(chunk);
    });
    upstream.on('data', (chunk) => {
      if (!frozen) client.write(chunk);
    });
    const end = () => {
      client.destroy();
      upstream.destroy();
    };
    client.on('close', end).on('error', end);
    upstream.on('close', end).on('error', end);
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as AddressInfo;
  const url = new URL(target);
  url.hostname = '127.0.0.1';
  url.port = String(port);
  return {
    url: url.toString(),
    release: () => {
      const waiting = held ?? [];
      held = null;
      for (const send of waiting) send();
    },
    freeze: () => {
      frozen = true;
    },
    close: async () => {
      for (const s of sockets) s.destroy();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
}

describe('rate limits with Redis unreachable', () => {
  it('a rate-limited request is let through at once when REDIS_URL points at a closed port', async () => {
    const s = await serve({ REDIS_URL: `redis://127.0.0.1:${await closedPort()}`, RATE_LIMIT_DEFAULT: '5' });
    // More requests than the limit: with no counter to consult, none is refused.
    for (let i = 0; i < 7; i++) {
      const { ms, status } = await timed(s.url, '/users/me');
      expect(status).toBe(401);
      expect(ms).toBeLessThan(1500);
    }
  });

  it('says in the log, once for a burst, that requests went through uncounted', async () => {
    const logDir = mkdtempSync(path.join(os.tmpdir(), 'kiln-ratelimit-log-'));
    cleanups.push(() => rmSync(logDir, { recursive: true, force: true }));
    const s = await startServer({ REDIS_URL: `redis://127.0.0.1:${await closedPort()}`, RATE_LIMIT_DEFAULT: '5', LOG_FILE: path.join(logDir, 'kiln.log'), LOG_LEVEL: 'warn' });
    const statuses: number[] = [];
    try {
      for (let i = 0; i < 7; i++) statuses.push((await timed(s.url, '/users/me')).status);
    } finally {
      // pino writes through a worker thread: only after close is every line on disk.
      await s.close();
    }
    expect(statuses).toEqual(Array(7).fill(401));
    const lines = readLogLines<{ msg: string; level: number }>(logDir);
    const uncounted = lines.filter((l) => l.msg === 'rate limit store (Redis) failed: request let through uncounted');
    expect(uncounted).toHaveLength(1);
    expect(uncounted[0]?.level).toBe(40);
  });
});

describe.skipIf(!REDIS_URL)('rate limits with a Redis that stops answering', () => {
  it('lets requests through at once before the connection is ready, counts once it is, and lets them through at once when Redis hangs', async () => {
    // A made-up client address, unique to this run, keeps its counter apart from any other run's (TRUST_PROXY=1 reads it from X-Forwarded-For).
    const from = { 'x-forwarded-for': `10.${randomInt(256)}.${randomInt(256)}.${randomInt(1, 255)}` };
    cleanups.push(async () => {
      const redis = new Redis(REDIS_URL as string);
      const keys = await redis.keys(`${RATE_LIMIT_NAMESPACE}*${from['x-forwarded-for']}`);
      if (keys.length > 0) await redis.del(...keys);
      await redis.quit();
    });
    const relay = await relayTo(new URL(REDIS_URL as string));
    cleanups.push(() => relay.close());
    const s = await serve({ REDIS_URL: relay.url, RATE_LIMIT_DEFAULT: '5', TRUST_PROXY: '1' });
    // Before the connection is ready (the relay holds the handshake back), requests are let through at once, past the limit.
    for (let i = 0; i < 6; i++) {
      const { ms, status } = await timed(s.url, '/users/me', from);
      expect(status).toBe(401);
      expect(ms).toBeLessThan(1500);
    }
    // Once connected, the counter in Redis counts each request.
    relay.release();
    await expect.poll(async () => (await timed(s.url, '/users/me', from)).remaining, { timeout: 5000 }).toBe('4');
    const next = await timed(s.url, '/users/me', from);
    expect([next.status, next.remaining]).toEqual([401, '3']);

    relay.freeze();
    for (let i = 0; i < 3; i++) {
      const { ms, status } = await timed(s.url, '/users/me', from);
      expect(status).toBe(401);
      expect(ms).toBeLessThan(1500);
    }
  });
});
