/**
 * A Redis client for things Redis is not the truth of (rate-limit counters,
 * the cache, broadcasts): it fails fast rather than making a request wait.
 * No offline queue, so while not connected (Redis down, the first moments
 * after a start) a command fails at once instead of waiting for a
 * reconnect; a command timeout, so a Redis that is connected but stops
 * answering costs a command at most that long. ioredis is loaded only by a
 * deployment with REDIS_URL.
 */
import type { Redis } from 'ioredis';

/** The longest one command waits for a Redis that is connected but does not answer. */
export const REDIS_COMMAND_TIMEOUT_MS = 500;

export async function failFastRedis(url: string): Promise<Redis> {
  const { Redis } = await import('ioredis');
  return new Redis(url, { enableOfflineQueue: false, commandTimeout: REDIS_COMMAND_TIMEOUT_MS, maxRetriesPerRequest: 1, connectTimeout: 2000 });
}
