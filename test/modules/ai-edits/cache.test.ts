/**
 * Status reads through the TTL cache: a hit costs no database query, the
 * database stays the truth (eviction, a cleared cache, a restart), and with
 * Redis the cache is shared by processes.
 */
import { randomBytes } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { cacheKey, type ProcessView } from '../../../src/modules/ai-edits/service.js';
import { RedisCache } from '../../../src/platform/cache/index.js';
import { tempDataDir } from '../../helpers/config.js';
import type { TestServer } from '../../helpers/server.js';
import { registerUser } from '../../helpers/users.js';
import { REFUSAL, startFakeOpenAI, type FakeOpenAI } from './fake-openai.js';
import { countQueries, get, post, SERVICE, startAiServer, startEdit, waitForEnd, type StatusData } from './server.js';

const REDIS = process.env.TEST_REDIS_URL;

let fake: FakeOpenAI;
beforeAll(async () => {
  fake = await startFakeOpenAI();
});
afterAll(async () => fake.close());

function env(extra: Record<string, string> = {}): Record<string, string> {
  return { OPENAI_API_KEY: 'sk-test', OPENAI_BASE_URL: fake.baseUrl, ...extra };
}

async function status(server: TestServer, initId: string, headers: Record<string, string> = SERVICE): Promise<StatusData> {
  const res = await post<StatusData>(server.url, '/api/v1/process/status', headers, { init_id: initId });
  expect(res.status).toBe(200);
  return res.body.data;
}

describe('status through the memory cache', () => {
  let server: TestServer;
  let queries: ReturnType<typeof countQueries>;
  beforeAll(async () => {
    server = await startAiServer(env({ CACHE_MAX_ITEMS: '5' }), { prepare: (ctx) => void (queries = countQueries(ctx)) });
  });
  afterAll(async () => server.close());

  it('answers a cached status with no database query (static API_KEY)', async () => {
    const { initId } = await startEdit(server.url, SERVICE);
    const done = await waitForEnd(server.url, SERVICE, initId);
    expect(done.status).toBe('completed');
    queries.reset();
    for (let i = 0; i < 5; i++) expect(await status(server, initId)).toEqual(done);
    expect(queries.count).toBe(0);
  });

  it('adds no query of its own with a user\'s API key (the guard\'s key lookup is the only one)', async () => {
    const user = await registerUser(server.url);
    const made = await fetch(`${server.url}/auth/api-keys`, { method: 'POST', headers: { ...user.headers, 'content-type': 'application/json' }, body: '{"name":"k"}' });
    const headers = { 'x-api-key': ((await made.json()) as { key: string }).key };
    const { initId } = await startEdit(server.url, headers);
    await waitForEnd(server.url, headers, initId);
    queries.reset();
    await status(server, initId, headers);
    expect(queries.count).toBeLessThanOrEqual(1);
  });

  it('reads the database again after the entry is deleted, and answers the same', async () => {
    const { initId } = await startEdit(server.url, SERVICE);
    const done = await waitForEnd(server.url, SERVICE, initId);
    expect(await server.ctx.cache.delete(cacheKey(initId))).toBe(true);
    queries.reset();
    expect(await status(server, initId)).toEqual(done);
    expect(queries.count).toBeGreaterThan(0);
    // …and caches it again.
    expect(await server.ctx.cache.get<ProcessView>(cacheKey(initId))).toMatchObject({ status: 'completed', result_url: done.result_url });
  });

  it('loses nothing when entries are evicted by the size bound', async () => {
    const { initId } = await startEdit(server.url, SERVICE);
    const done = await waitForEnd(server.url, SERVICE, initId);
    const before = (await server.ctx.cache.stats()).evictions;
    for (let i = 0; i < 6; i++) await server.ctx.cache.set(`filler:${i}`, i);
    const stats = await server.ctx.cache.stats();
    expect(stats.evictions).toBeGreaterThan(before);
    expect(stats.entries.map((e) => e.key)).not.toContain(cacheKey(initId));
    expect(await status(server, initId)).toEqual(done);
  });
});

describe('CACHE_TTL_SECONDS', () => {
  let server: TestServer;
  let queries: ReturnType<typeof countQueries>;
  let offsetMs = 0;
  const clock = { now: () => new Date(Date.now() + offsetMs) };
  beforeAll(async () => {
    server = await startAiServer(env({ CACHE_TTL_SECONDS: '60' }), { clock, prepare: (ctx) => void (queries = countQueries(ctx)) });
  });
  afterAll(async () => server.close());

  async function cacheStatus(): Promise<{ ttl_seconds: number; entries: Array<{ key: string; expires_at: string }> }> {
    const res = await get<{ ttl_seconds: number; entries: Array<{ key: string; expires_at: string }> }>(server.url, '/api/v1/cache/status', SERVICE);
    expect(res.status).toBe(200);
    return res.body.data;
  }

  it('is the ttl_seconds of /cache/status, and a finished state expires after it', async () => {
    const { initId } = await startEdit(server.url, SERVICE);
    const done = await waitForEnd(server.url, SERVICE, initId);
    expect(done.status).toBe('completed');

    const stats = await cacheStatus();
    expect(stats.ttl_seconds).toBe(60);
    const entry = stats.entries.find((e) => e.key === cacheKey(initId));
    const left = Date.parse(entry?.expires_at ?? '') - clock.now().getTime();
    expect(left).toBeGreaterThan(50_000);
    expect(left).toBeLessThanOrEqual(60_000);

    // Still cached a little before the 60 s are up: no query.
    offsetMs = 55_000;
    queries.reset();
    expect(await status(server, initId)).toEqual(done);
    expect(queries.count).toBe(0);

    // Gone once they are: out of the entry list, and the next read goes to the database (and answers the same).
    offsetMs = 61_000;
    expect((await cacheStatus()).entries.map((e) => e.key)).not.toContain(cacheKey(initId));
    queries.reset();
    expect(await status(server, initId)).toEqual(done);
    expect(queries.count).toBeGreaterThan(0);
  });

  it('keeps a failed state, like a completed one, for CACHE_TTL_SECONDS', async () => {
    offsetMs = 0;
    fake.script.push(REFUSAL);
    const { initId } = await startEdit(server.url, SERVICE);
    const failed = await waitForEnd(server.url, SERVICE, initId);
    expect(failed.status).toBe('failed');

    const entry = (await cacheStatus()).entries.find((e) => e.key === cacheKey(initId));
    const left = Date.parse(entry?.expires_at ?? '') - clock.now().getTime();
    expect(left).toBeGreaterThan(50_000);
    expect(left).toBeLessThanOrEqual(60_000);

    // Still answered from the cache 55 s on: no query.
    offsetMs = 55_000;
    queries.reset();
    expect(await status(server, initId)).toEqual(failed);
    expect(queries.count).toBe(0);
  });
});


describe('a restart', () => {
  it('answers the same status from a new server process over the same DATA_DIR', async () => {
    const data = tempDataDir();
    try {
      const first = await startAiServer(env(), { dataDir: data.dir });
      const { initId } = await startEdit(first.url, SERVICE);
      const done = await waitForEnd(first.url, SERVICE, initId);
      const pending = (await post<{ init_id: string }>(first.url, '/api/v1/initiate-process', SERVICE)).body.data.init_id;
      await first.close();

      const second = await startAiServer(env(), { dataDir: data.dir });
      try {
        expect((await second.ctx.cache.stats()).size).toBe(0);
        expect(await status(second, initId)).toEqual(done);
        expect(await status(second, pending)).toEqual({ init_id: pending, status: 'initiated' });
        const image = await fetch(`${second.url}${done.result_url}`, { headers: SERVICE });
        expect(image.status).toBe(200);
      } finally {
        await second.close();
      }
    } finally {
      data.cleanup();
    }
  });
});

describe.skipIf(!REDIS)('status through the Redis cache (TEST_REDIS_URL)', () => {
  const namespace = `ai-edits-test-${randomBytes(4).toString('hex')}`;
  // Made in beforeAll, not here: a describe that is skipped (no Redis) still runs its body, and would leave the directory.
  let data: ReturnType<typeof tempDataDir>;
  let a: TestServer;
  let b: TestServer;
  let bQueries: ReturnType<typeof countQueries>;

  beforeAll(async () => {
    data = tempDataDir();
    const redisCache = () => new RedisCache({ url: REDIS, ttlSeconds: 3600, maxItems: 1000, namespace });
    // Two processes over one database and one Redis: what a scaled-out deployment looks like.
    a = await startAiServer(env(), { dataDir: data.dir, prepare: (ctx) => void (ctx.cache = redisCache()) });
    b = await startAiServer(env(), {
      dataDir: data.dir,
      prepare: (ctx) => {
        ctx.cache = redisCache();
        bQueries = countQueries(ctx);
      },
    });
  });
  afterAll(async () => {
    await a.close();
    await b.close();
    // This run's keys go with it: the namespace is the test's own.
    await (a.ctx.cache as RedisCache).clear();
    await a.ctx.cache.close();
    await b.ctx.cache.close();
    data.cleanup();
  });

  it('shares the state one process wrote: the other answers from the cache with no query', async () => {
    const { initId } = await startEdit(a.url, SERVICE);
    const done = await waitForEnd(a.url, SERVICE, initId);
    expect(done.status).toBe('completed');
    bQueries.reset();
    expect(await status(b, initId)).toEqual(done);
    expect(bQueries.count).toBe(0);
    const stats = await b.ctx.cache.stats();
    expect(stats.entries.map((e) => e.key)).toContain(cacheKey(initId));
  });

  it('reads the database again when the Redis entry is gone', async () => {
    const { initId } = await startEdit(a.url, SERVICE);
    const done = await waitForEnd(a.url, SERVICE, initId);
    await a.ctx.cache.delete(cacheKey(initId));
    expect(await status(b, initId)).toEqual(done);
  });
});
