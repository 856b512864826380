/**
 * In-process TtlCache over lru-cache: one process, gone on restart (the
 * database stays the truth). Values are kept as JSON text so a caller gets
 * a fresh copy each time and sees exactly what Redis would give back.
 *
 * Counting: a hit is a `get` that finds a live entry, a miss one that does
 * not (an expired entry is a miss). An eviction is lru-cache disposing an
 * entry with reason 'evict', i.e. the least recently used entry pushed out
 * by the size bound; TTL expiry ('expire') and deletes are not evictions.
 */
import { LRUCache } from 'lru-cache';
import { systemClock, type Clock } from '../../clock.js';
import type { CacheOptions, CacheStats, TtlCache } from './index.js';
import { encodeValue, ttlMilliseconds } from './values.js';

export interface MemoryCacheOptions extends CacheOptions {
  /** Time source for expiry, so tests can move time instead of sleeping. */
  clock?: Clock;
}

export class MemoryCache implements TtlCache {
  private readonly lru: LRUCache<string, string>;
  private readonly clock: Clock;
  private readonly ttlSeconds: number;
  private readonly maxItems: number;
  private hits = 0;
  private misses = 0;
  private evictions = 0;

  constructor(options: MemoryCacheOptions) {
    this.clock = options.clock ?? systemClock;
    this.ttlSeconds = options.ttlSeconds;
    this.maxItems = options.maxItems;
    // Validates the default TTL once, at construction, rather than on the first set.
    const ttl = ttlMilliseconds(undefined, options.ttlSeconds);
    this.lru = new LRUCache<string, string>({
      max: options.maxItems,
      ttl,
      // Read the injected clock on every check: lru-cache otherwise caches "now" for 1 ms with a timer.
      ttlResolution: 0,
      perf: { now: () => this.clock.now().getTime() },
      // A get must not extend an entry's life: expiry is set when the value is written.
      updateAgeOnGet: false,
      allowStale: false,
      dispose: (_value, _key, reason) => {
        if (reason === 'evict') this.evictions++;
      },
    });
  }

  async get<T>(key: string): Promise<T | undefined> {
    const text = this.lru.get(key);
    if (text === undefined) {
      this.misses++;
      return undefined;
    }
    this.hits++;
    return JSON.parse(text) as T;
  }

  async set(key: string, value: unknown, ttlSeconds?: number): Promise<void> {
    const ttl = ttlMilliseconds(ttlSeconds, this.ttlSeconds);
    this.lru.set(key, encodeValue(key, value), { ttl });
  }

  async delete(key: string): Promise<boolean> {
    return this.lru.delete(key);
  }

  async stats(): Promise<CacheStats> {
    // Expired entries still sit in the LRU until touched; drop them so size and entries are live ones.
    this.lru.purgeStale();
    const now = this.clock.now().getTime();
    const entries = [...this.lru.keys()].map((key) => ({
      key,
      expires_at: new Date(now + this.lru.getRemainingTTL(key)).toISOString(),
    }));
    return {
      size: entries.length,
      max_size: this.maxItems,
      ttl_seconds: this.ttlSeconds,
      hits: this.hits,
      misses: this.misses,
      evictions: this.evictions,
      entries,
    };
  }

  async close(): Promise<void> {
    this.lru.clear();
  }
}
