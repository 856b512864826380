/**
 * TtlCache: a small key → JSON value cache with a time to live and a size
 * bound, in front of the database (never instead of it). Two implementations
 * behind one interface: `memory.ts` (lru-cache, one process) and `redis.ts`
 * (shared by every process when REDIS_URL is set). Counters (hits, misses,
 * evictions) and the entry list feed `GET /api/v1/cache/status`.
 *
 * Keys are free strings; a module starts its keys with its own name
 * (`ai-edits:process:<id>`) so modules sharing `ctx.cache` never collide.
 * A whole cache is isolated from another by its `namespace`.
 */
import type { Logger } from 'pino';
import type { Clock } from '../../clock.js';
import type { Config } from '../../config.js';
import { MemoryCache } from './memory.js';
import { RedisCache } from './redis.js';

export interface CacheEntryInfo {
  key: string;
  /** ISO 8601 UTC with Z. */
  expires_at: string;
}

/** The shape of `GET /api/v1/cache/status`'s `data`, field names included. */
export interface CacheStats {
  size: number;
  max_size: number;
  ttl_seconds: number;
  hits: number;
  misses: number;
  /** Entries removed to make room (size bound); expiry by TTL is not an eviction. */
  evictions: number;
  entries: CacheEntryInfo[];
}

export interface TtlCache {
  /** The value, or undefined when absent or expired (a miss). Always a fresh copy. */
  get<T>(key: string): Promise<T | undefined>;
  /** Stores a JSON-serialisable value; `ttlSeconds` (may be fractional) defaults to the cache's TTL. */
  set(key: string, value: unknown, ttlSeconds?: number): Promise<void>;
  /** Removes the entry; true when there was one. Not counted as an eviction. */
  delete(key: string): Promise<boolean>;
  stats(): Promise<CacheStats>;
  /** Releases connections and timers; the cache is unusable afterwards. */
  close(): Promise<void>;
}

export interface CacheOptions {
  ttlSeconds: number;
  maxItems: number;
  /** Isolates this cache's keys and counters from any other cache (another module, another test run). */
  namespace?: string;
}

export { MemoryCache, type MemoryCacheOptions } from './memory.js';
export { RedisCache, type RedisCacheOptions } from './redis.js';
export { encodeValue, ttlMilliseconds } from './values.js';

/** The cache a deployment asks for: Redis (shared) when REDIS_URL is set, in-process memory otherwise. */
export function createCache(
  config: Pick<Config, 'redisUrl' | 'redisPrefix' | 'cacheTtlSeconds' | 'cacheMaxItems'>,
  options: { namespace?: string; clock?: Clock; log?: Pick<Logger, 'warn' | 'info'> } = {},
): TtlCache {
  const base = { ttlSeconds: config.cacheTtlSeconds, maxItems: config.cacheMaxItems, namespace: options.namespace };
  if (config.redisUrl) return new RedisCache({ ...base, url: config.redisUrl, log: options.log, keyPrefix: config.redisPrefix });
  return new MemoryCache({ ...base, clock: options.clock });
}

/**
 * Read-through: the cached value when there is one, else `loader()` (the
 * database, which stays the truth) stored for next time. An `undefined`
 * from the loader (nothing there) is not cached, so a row created later is
 * seen at once.
 */
export async function cached<T>(
  cache: TtlCache,
  key: string,
  loader: () => Promise<T | undefined>,
  ttlSeconds?: number,
): Promise<T | undefined> {
  const hit = await cache.get<T>(key);
  if (hit !== undefined) return hit;
  const value = await loader();
  if (value !== undefined) await cache.set(key, value, ttlSeconds);
  return value;
}

/**
 * How long an lru-cache may reuse one reading of the clock for its TTL
 * checks. Its default (1 ms) arms a timer in every millisecond the cache is
 * read, which a busy hot path pays for; the row and blob caches keep entries
 * a minute, and a second's slack on that changes nothing.
 */
export const LRU_TTL_RESOLUTION_MS = 1000;
