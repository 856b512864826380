/**
 * TtlCache in Redis, shared by every Kiln process on the same REDIS_URL.
 *
 * Layout under the prefix `<REDIS_PREFIX>:cache:{<namespace>}:` (the braces are a
 * cluster hash tag, so one namespace lives in one slot and its scripts may
 * touch all its keys):
 *   v:<key>  the value, JSON text, SET with PX (its TTL)
 *   stats    hash of hits, misses, evictions, and `seq` (a write counter)
 *   order    sorted set key → write sequence number (oldest write first)
 *   exp      sorted set key → expiry time in ms (to forget expired keys)
 *
 * Every read and write is one Lua script, so counters move atomically with
 * the data and all processes see the same numbers.
 *
 * The size bound: after each write, keys whose TTL has passed are dropped
 * from both sets (not evictions), then while `order` holds more than
 * max_size keys the least recently written is deleted and counted as an
 * eviction. It is approximate in two ways: it is enforced on writes only
 * (lowering max_size takes effect at the next set), and a value removed
 * behind Kiln's back (Redis maxmemory, a manual DEL) keeps its place in
 * `order` until it expires or is trimmed, uncounted.
 */
import type { Redis } from 'ioredis';
import type { Logger } from 'pino';
import type { CacheEntryInfo, CacheOptions, CacheStats, TtlCache } from './index.js';
import { closeRedis, failFastRedis, watchRedisConnection } from '../redis.js';
import { encodeValue, ttlMilliseconds } from './values.js';

export interface RedisCacheOptions extends CacheOptions {
  /** A redis:// URL; the cache opens and closes its own connection. */
  url?: string;
  /** Or a connection owned by the caller, left open on close. */
  client?: Redis;
  /** Where connection errors go (ioredis reconnects by itself). */
  log?: Pick<Logger, 'warn' | 'info'>;
  /** The first part of every key (REDIS_PREFIX). Default `kiln`. */
  keyPrefix?: string;
}

const NAMESPACE = /^[A-Za-z0-9_.:-]{1,100}$/;

// KEYS: value, stats. Returns the JSON text or nil.
const GET_SCRIPT = `
local v = redis.call('GET', KEYS[1])
if v then redis.call('HINCRBY', KEYS[2], 'hits', 1) else redis.call('HINCRBY', KEYS[2], 'misses', 1) end
return v`;

// KEYS: value, stats, order, exp. ARGV: json, ttl ms, max items, key, value-key prefix.
const SET_SCRIPT = `
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local ttl = tonumber(ARGV[2])
local expired = redis.call('ZRANGEBYSCORE', KEYS[4], '-inf', now, 'LIMIT', 0, 1000)
for i = 1, #expired do
  redis.call('ZREM', KEYS[3], expired[i])
  redis.call('ZREM', KEYS[4], expired[i])
end
redis.call('SET', KEYS[1], ARGV[1], 'PX', ttl)
local seq = redis.call('HINCRBY', KEYS[2], 'seq', 1)
redis.call('ZADD', KEYS[3], seq, ARGV[4])
redis.call('ZADD', KEYS[4], now + ttl, ARGV[4])
local over = redis.call('ZCARD', KEYS[3]) - tonumber(ARGV[3])
local evicted = 0
if over > 0 then
  local victims = redis.call('ZPOPMIN', KEYS[3], over)
  for i = 1, #victims, 2 do
    redis.call('ZREM', KEYS[4], victims[i])
    evicted = evicted + redis.call('DEL', ARGV[5] .. victims[i])
  end
  if evicted > 0 then redis.call('HINCRBY', KEYS[2], 'evictions', evicted) end
end
return evicted`;

// KEYS: value, order, exp. ARGV: key. Returns 1 when a value was there.
const DELETE_SCRIPT = `
redis.call('ZREM', KEYS[2], ARGV[1])
redis.call('ZREM', KEYS[3], ARGV[1])
return redis.call('DEL', KEYS[1])`;

/** How long the first calls wait for a new connection to be ready; later calls never wait for one. */
const CONNECT_WAIT_MS = 2000;

/** A cache that waits for Redis is worse than a miss (the database has every value), so it fails fast. */
async function connect(url: string, log: Pick<Logger, 'warn' | 'info'> | undefined): Promise<Redis> {
  const client = await failFastRedis(url);
  if (log) watchRedisConnection(client, log, 'cache');
  else client.on('error', () => undefined); // an 'error' nobody listens to would end the process
  // The first calls wait for the connection (bounded), so a cache that has just opened is not a run of misses.
  await new Promise<void>((resolve) => {
    const timer = setTimeout(resolve, CONNECT_WAIT_MS);
    client.once('ready', () => {
      clearTimeout(timer);
      resolve();
    });
  });
  return client;
}

/** SCAN MATCH treats these as glob syntax; a prefix must match only itself. */
function globEscape(text: string): string {
  return text.replace(/[*?[\]\\]/g, '\\$&');
}

export class RedisCache implements TtlCache {
  /** Resolved at once for a caller's client; after ioredis has loaded for a url. */
  private readonly connection: Promise<Redis>;
  private readonly ownsClient: boolean;
  private readonly prefix: string;
  private readonly ttlSeconds: number;
  private readonly maxItems: number;

  constructor(options: RedisCacheOptions) {
    const namespace = options.namespace ?? 'default';
    if (!NAMESPACE.test(namespace)) throw new RangeError(`cache namespace "${namespace}" must match ${NAMESPACE}`);
    ttlMilliseconds(undefined, options.ttlSeconds);
    if (options.client) {
      this.connection = Promise.resolve(options.client);
      this.ownsClient = false;
    } else if (options.url) {
      this.connection = connect(options.url, options.log);
      this.ownsClient = true;
    } else {
      throw new TypeError('RedisCache needs a url or a client');
    }
    this.prefix = `${options.keyPrefix ?? 'kiln'}:cache:{${namespace}}:`;
    this.ttlSeconds = options.ttlSeconds;
    this.maxItems = options.maxItems;
  }

  private valueKey(key: string): string {
    return `${this.prefix}v:${key}`;
  }

  async get<T>(key: string): Promise<T | undefined> {
    const client = await this.connection;
    const text = await client.eval(GET_SCRIPT, 2, this.valueKey(key), `${this.prefix}stats`);
    if (typeof text !== 'string') return undefined;
    return JSON.parse(text) as T;
  }

  async set(key: string, value: unknown, ttlSeconds?: number): Promise<void> {
    const ttl = ttlMilliseconds(ttlSeconds, this.ttlSeconds);
    const p = this.prefix;
    const client = await this.connection;
    await client.eval(
      SET_SCRIPT,
      4,
      this.valueKey(key),
      `${p}stats`,
      `${p}order`,
      `${p}exp`,
      encodeValue(key, value),
      ttl,
      this.maxItems,
      key,
      `${p}v:`,
    );
  }

  async delete(key: string): Promise<boolean> {
    const p = this.prefix;
    const client = await this.connection;
    const removed = await client.eval(DELETE_SCRIPT, 3, this.valueKey(key), `${p}order`, `${p}exp`, key);
    return removed === 1;
  }

  async stats(): Promise<CacheStats> {
    const client = await this.connection;
    const [counters, time] = await Promise.all([
      client.hmget(`${this.prefix}stats`, 'hits', 'misses', 'evictions'),
      client.time(),
    ]);
    const now = Number(time[0]) * 1000 + Math.floor(Number(time[1]) / 1000);
    const entries = await this.liveEntries(client, now);
    const [hits, misses, evictions] = counters.map((v) => Number(v ?? 0));
    return {
      size: entries.length,
      max_size: this.maxItems,
      ttl_seconds: this.ttlSeconds,
      hits: hits ?? 0,
      misses: misses ?? 0,
      evictions: evictions ?? 0,
      entries,
    };
  }

  /** Every value key of this namespace still alive, found by SCAN (never KEYS, which blocks Redis). */
  private async liveEntries(client: Redis, now: number): Promise<CacheEntryInfo[]> {
    const valuePrefix = `${this.prefix}v:`;
    const entries: CacheEntryInfo[] = [];
    let cursor = '0';
    do {
      const [next, keys] = await client.scan(cursor, 'MATCH', `${globEscape(valuePrefix)}*`, 'COUNT', 1000);
      cursor = next;
      if (keys.length === 0) continue;
      const pipeline = client.pipeline();
      for (const k of keys) pipeline.pttl(k);
      const ttls = (await pipeline.exec()) ?? [];
      keys.forEach((k, i) => {
        const [err, ms] = ttls[i] ?? [null, -2];
        if (err) throw err;
        // -2: expired between SCAN and PTTL; -1 cannot happen (every SET has PX) but would mean "no expiry".
        if (typeof ms !== 'number' || ms < 0) return;
        entries.push({ key: k.slice(valuePrefix.length), expires_at: new Date(now + ms).toISOString() });
      });
    } while (cursor !== '0');
    return entries;
  }

  /** Removes every key of this namespace, counters included (tests; an operator starting afresh). */
  async clear(): Promise<void> {
    const client = await this.connection;
    let cursor = '0';
    do {
      const [next, keys] = await client.scan(cursor, 'MATCH', `${globEscape(this.prefix)}*`, 'COUNT', 1000);
      cursor = next;
      if (keys.length > 0) await client.del(...keys);
    } while (cursor !== '0');
  }

  async close(): Promise<void> {
    if (!this.ownsClient) return;
    await closeRedis(await this.connection);
  }
}
