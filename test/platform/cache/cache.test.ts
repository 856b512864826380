import { randomBytes } from 'node:crypto';
import { afterEach, describe, expect, it } from 'vitest';
import { cached, MemoryCache, RedisCache, type CacheOptions, type TtlCache } from '../../../src/platform/cache/index.js';

const TEST_REDIS_URL = process.env.TEST_REDIS_URL;

interface Impl {
  name: string;
  /** A cache over storage that outlives it: a second call with the same namespace sees the first's data (Redis) or not (memory). */
  make(options: CacheOptions): TtlCache;
  /** Removes whatever the run left behind. */
  cleanup(cache: TtlCache): Promise<void>;
}

const memory: Impl = {
  name: 'memory',
  make: (options) => new MemoryCache(options),
  cleanup: async () => {},
};

const redis: Impl = {
  name: 'redis',
  make: (options) => new RedisCache({ ...options, url: TEST_REDIS_URL }),
  cleanup: async (cache) => (cache as RedisCache).clear(),
};

if (!TEST_REDIS_URL) {
  process.stderr.write('\nNOTICE: TEST_REDIS_URL is not set: the Redis cache suite is skipped.\n');
}

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

describe.each([
  { impl: memory, skip: false },
  { impl: redis, skip: !TEST_REDIS_URL },
])('TtlCache ($impl.name)', ({ impl, skip }) => {
  const open: TtlCache[] = [];
  // Each test its own namespace, so parallel runs and earlier failures never leak into a test.
  function newCache(overrides: Partial<CacheOptions> = {}): TtlCache {
    const cache = impl.make({ ttlSeconds: 60, maxItems: 100, namespace: `t-${randomBytes(6).toString('hex')}`, ...overrides });
    open.push(cache);
    return cache;
  }

  afterEach(async () => {
    for (const cache of open.splice(0)) {
      await impl.cleanup(cache);
      await cache.close();
    }
  });

  it.skipIf(skip)('counts hits and misses and gives back what was stored', async () => {
    const cache = newCache();
    expect(await cache.get('a')).toBeUndefined();
    await cache.set('a', { status: 'processing', n: 1, tags: ['x'] });
    expect(await cache.get('a')).toEqual({ status: 'processing', n: 1, tags: ['x'] });
    expect(await cache.get('a')).toEqual({ status: 'processing', n: 1, tags: ['x'] });
    expect(await cache.get('b')).toBeUndefined();
    const stats = await cache.stats();
    expect(stats).toMatchObject({ hits: 2, misses: 2, evictions: 0, size: 1, max_size: 100, ttl_seconds: 60 });
  });

  it.skipIf(skip)('returns a copy: mutating a result does not change the cache', async () => {
    const cache = newCache();
    await cache.set('a', { n: 1 });
    const got = await cache.get<{ n: number }>('a');
    got!.n = 2;
    expect(await cache.get('a')).toEqual({ n: 1 });
  });

  it.skipIf(skip)('forgets an entry after its TTL, as a miss and not as an eviction', async () => {
    const cache = newCache();
    await cache.set('short', 'v', 0.2);
    await cache.set('long', 'w');
    expect(await cache.get('short')).toBe('v');
    await sleep(400);
    expect(await cache.get('short')).toBeUndefined();
    expect(await cache.get('long')).toBe('w');
    const stats = await cache.stats();
    expect(stats).toMatchObject({ hits: 2, misses: 1, evictions: 0, size: 1 });
    expect(stats.entries.map((e) => e.key)).toEqual(['long']);
  });

  it.skipIf(skip)('evicts beyond max size and counts each eviction', async () => {
    const cache = newCache({ maxItems: 3 });
    for (const key of ['k1', 'k2', 'k3', 'k4', 'k5']) await cache.set(key, key);
    const stats = await cache.stats();
    expect(stats.size).toBe(3);
    expect(stats.evictions).toBe(2);
    // The two oldest writes went; the newest are all there.
    expect(await cache.get('k1')).toBeUndefined();
    expect(await cache.get('k2')).toBeUndefined();
    expect(await cache.get('k5')).toBe('k5');
  });

  it.skipIf(skip)('lists entries with ISO UTC expiry times', async () => {
    const cache = newCache({ ttlSeconds: 100 });
    const before = Date.now();
    await cache.set('one', 1);
    await cache.set('two', 2, 10);
    const { entries, size } = await cache.stats();
    expect(size).toBe(2);
    const byKey = Object.fromEntries(entries.map((e) => [e.key, e.expires_at]));
    expect(Object.keys(byKey).sort()).toEqual(['one', 'two']);
    for (const iso of Object.values(byKey)) expect(iso).toMatch(/^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$/);
    // Allow for clock difference with the Redis server.
    expect(Date.parse(byKey.one!) - before).toBeGreaterThan(95_000);
    expect(Date.parse(byKey.one!) - before).toBeLessThan(105_000);
    expect(Date.parse(byKey.two!) - before).toBeGreaterThan(5_000);
    expect(Date.parse(byKey.two!) - before).toBeLessThan(15_000);
  });

  it.skipIf(skip)('deletes an entry, which is not an eviction', async () => {
    const cache = newCache();
    await cache.set('a', 1);
    expect(await cache.delete('a')).toBe(true);
    expect(await cache.delete('a')).toBe(false);
    expect(await cache.get('a')).toBeUndefined();
    expect(await cache.stats()).toMatchObject({ size: 0, evictions: 0, entries: [] });
  });

  it.skipIf(skip)('rejects values JSON cannot carry and non-positive TTLs', async () => {
    const cache = newCache();
    await expect(cache.set('a', undefined)).rejects.toThrow(TypeError);
    await expect(cache.set('a', 1, 0)).rejects.toThrow(RangeError);
    await expect(cache.set('a', 1, -1)).rejects.toThrow(RangeError);
  });

  it.skipIf(skip)('keeps namespaces apart', async () => {
    const a = newCache();
    const b = newCache();
    await a.set('same', 'from a');
    expect(await b.get('same')).toBeUndefined();
    expect((await b.stats()).size).toBe(0);
    expect((await a.stats()).size).toBe(1);
  });

  describe('the database stays the truth', () => {
    it.skipIf(skip)('read-through answers the same after an eviction, calling the loader again', async () => {
      const database = new Map([
        ['p1', { init_id: 'p1', status: 'done' }],
        ['p2', { init_id: 'p2', status: 'processing' }],
      ]);
      let loads = 0;
      const load = (id: string) => async () => {
        loads++;
        return database.get(id);
      };
      const cache = newCache({ maxItems: 1 });
      expect(await cached(cache, 'p1', load('p1'))).toEqual({ init_id: 'p1', status: 'done' });
      expect(await cached(cache, 'p1', load('p1'))).toEqual({ init_id: 'p1', status: 'done' });
      expect(loads).toBe(1);
      await cached(cache, 'p2', load('p2')); // pushes p1 out
      expect((await cache.stats()).evictions).toBe(1);
      expect(await cached(cache, 'p1', load('p1'))).toEqual({ init_id: 'p1', status: 'done' });
      expect(loads).toBe(3);
    });

    it.skipIf(skip)('read-through answers the same from a new cache (a restart)', async () => {
      const row = { init_id: 'p1', status: 'failed', error: 'provider_timeout' };
      let loads = 0;
      const loader = async () => {
        loads++;
        return row;
      };
      const first = newCache();
      expect(await cached(first, 'p1', loader)).toEqual(row);
      await impl.cleanup(first); // what a restart loses (memory) or an operator flushes (Redis)
      await first.close();
      open.splice(open.indexOf(first), 1);
      const second = newCache();
      expect(await cached(second, 'p1', loader)).toEqual(row);
      expect(loads).toBe(2);
      expect(await cached(second, 'p1', loader)).toEqual(row);
      expect(loads).toBe(2);
    });

    it.skipIf(skip)('does not cache "not found", so a row created later is seen', async () => {
      const cache = newCache();
      const database = new Map<string, { id: string }>();
      const load = async () => database.get('late');
      expect(await cached(cache, 'late', load)).toBeUndefined();
      database.set('late', { id: 'late' });
      expect(await cached(cache, 'late', load)).toEqual({ id: 'late' });
    });
  });
});

describe('MemoryCache with an injected clock', () => {
  it('expires by the clock, not by the wall', async () => {
    let now = Date.parse('2030-01-01T00:00:00.000Z');
    const cache = new MemoryCache({ ttlSeconds: 60, maxItems: 10, clock: { now: () => new Date(now) } });
    await cache.set('a', 1);
    expect((await cache.stats()).entries).toEqual([{ key: 'a', expires_at: '2030-01-01T00:01:00.000Z' }]);
    now += 59_000;
    expect(await cache.get('a')).toBe(1);
    now += 2_000;
    expect(await cache.get('a')).toBeUndefined();
    expect(await cache.stats()).toMatchObject({ size: 0, hits: 1, misses: 1, evictions: 0 });
    await cache.close();
  });
});

describe('MemoryCache when full', () => {
  it('drops the least recently used entry: a read keeps an entry from going', async () => {
    const cache = new MemoryCache({ ttlSeconds: 60, maxItems: 3 });
    for (const key of ['k1', 'k2', 'k3']) await cache.set(key, key);
    // k1 is the oldest write, but read since: k2 is now the least recently used.
    expect(await cache.get('k1')).toBe('k1');
    await cache.set('k4', 'k4');
    expect(await cache.get('k2')).toBeUndefined();
    expect([await cache.get('k1'), await cache.get('k3'), await cache.get('k4')]).toEqual(['k1', 'k3', 'k4']);
    expect(await cache.stats()).toMatchObject({ size: 3, evictions: 1 });
    await cache.close();
  });
});

describe.skipIf(!TEST_REDIS_URL)('RedisCache when full', () => {
  it('drops the least recently written entry: reads do not change the order', async () => {
    const cache = new RedisCache({ ttlSeconds: 60, maxItems: 3, namespace: `t-${randomBytes(6).toString('hex')}`, url: TEST_REDIS_URL });
    try {
      for (const key of ['k1', 'k2', 'k3']) await cache.set(key, key);
      // Read, but not written again: k1 is still the oldest write, and goes first.
      expect(await cache.get('k1')).toBe('k1');
      await cache.set('k4', 'k4');
      expect(await cache.get('k1')).toBeUndefined();
      expect([await cache.get('k2'), await cache.get('k3'), await cache.get('k4')]).toEqual(['k2', 'k3', 'k4']);
      // A write moves a key to the back of the line.
      await cache.set('k2', 'k2 again');
      await cache.set('k5', 'k5');
      expect(await cache.get('k3')).toBeUndefined();
      expect(await cache.get('k2')).toBe('k2 again');
      expect(await cache.stats()).toMatchObject({ size: 3, evictions: 2 });
    } finally {
      await cache.clear();
      await cache.close();
    }
  });
});

describe.skipIf(!TEST_REDIS_URL)('RedisCache shared by two processes', () => {
  it('two clients on one namespace share entries and counters', async () => {
    const namespace = `t-${randomBytes(6).toString('hex')}`;
    const a = new RedisCache({ ttlSeconds: 60, maxItems: 10, namespace, url: TEST_REDIS_URL });
    const b = new RedisCache({ ttlSeconds: 60, maxItems: 10, namespace, url: TEST_REDIS_URL });
    try {
      await a.set('k', { v: 1 });
      expect(await b.get('k')).toEqual({ v: 1 });
      expect(await a.get('missing')).toBeUndefined();
      expect(await a.stats()).toMatchObject({ size: 1, hits: 1, misses: 1 });
      expect(await b.stats()).toMatchObject({ size: 1, hits: 1, misses: 1 });
    } finally {
      await a.clear();
      await a.close();
      await b.close();
    }
  });
});
