/**
 * Telling the other processes of a deployment that something they may keep
 * in memory is gone (a deleted gallery image's row and bytes). With
 * REDIS_URL, through Redis pub/sub on `<REDIS_PREFIX>:broadcast`; without it
 * there is no other process that could hear, and a message reaches only
 * this one's own listeners.
 *
 * Best effort by design: what a process keeps in memory expires on its own
 * (a minute at most), so a message that is lost (Redis down, a process
 * reconnecting) costs only that minute. Publishing never waits on Redis
 * for long and never throws.
 */
import { once } from 'node:events';
import { setTimeout as sleep } from 'node:timers/promises';
import type { Redis } from 'ioredis';
import type { Logger } from 'pino';
import { failFastRedis, watchRedisConnection } from './redis.js';

export type BroadcastListener = (message: string) => void;

export interface Broadcast {
  /** Delivers `message` on `topic` to every process's listeners, this one's included. */
  publish(topic: string, message: string): Promise<void>;
  /** Listens on `topic` for as long as the process runs. */
  listen(topic: string, listener: BroadcastListener): void;
  close(): Promise<void>;
}

class Listeners {
  private readonly byTopic = new Map<string, BroadcastListener[]>();

  constructor(private readonly log: Pick<Logger, 'warn'>) {}

  add(topic: string, listener: BroadcastListener): void {
    this.byTopic.set(topic, [...(this.byTopic.get(topic) ?? []), listener]);
  }

  deliver(topic: string, message: string): void {
    for (const listener of this.byTopic.get(topic) ?? []) {
      try {
        listener(message);
      } catch (err) {
        this.log.warn({ err, topic }, 'a broadcast listener failed');
      }
    }
  }
}

/** One process: a message reaches this process's own listeners. */
export function localBroadcast(log: Pick<Logger, 'warn'>): Broadcast {
  const listeners = new Listeners(log);
  return {
    async publish(topic, message) {
      listeners.deliver(topic, message);
    },
    listen: (topic, listener) => listeners.add(topic, listener),
    async close() {},
  };
}

/** The longest a start waits for its subscription to a Redis that has not answered yet. */
const SUBSCRIBE_WAIT_MS = 2_000;

/** Every process on one Redis under one REDIS_PREFIX. */
export async function redisBroadcast(url: string, prefix: string, log: Pick<Logger, 'warn' | 'info'>): Promise<Broadcast> {
  const { Redis } = await import('ioredis');
  const channel = `${prefix}:broadcast`;
  const listeners = new Listeners(log);
  // The publisher fails fast; the subscriber, a connection of its own as Redis requires, reconnects
  // and subscribes again by itself (ioredis's autoResubscribe). Its first SUBSCRIBE waits for a
  // connection however long that takes: with ioredis's default of 20 reconnections (about 73 s) a
  // process started while Redis was away gave up for good, and autoResubscribe only renews channels
  // that were subscribed once, so it never heard another process's delete.
  const publisher: Redis = await failFastRedis(url);
  const subscriber: Redis = new Redis(url, { connectTimeout: 2000, maxRetriesPerRequest: null });
  let closed = false;
  watchRedisConnection(publisher, log, 'broadcast publish');
  watchRedisConnection(subscriber, log, 'broadcast subscribe');
  subscriber.on('message', (_channel: string, text: string) => {
    let parsed: { topic?: unknown; message?: unknown };
    try {
      parsed = JSON.parse(text) as typeof parsed;
    } catch {
      return; // not ours
    }
    if (typeof parsed.topic === 'string' && typeof parsed.message === 'string') listeners.deliver(parsed.topic, parsed.message);
  });
  const subscribed = subscriber.subscribe(channel).catch((err: unknown) => {
    // Closed before Redis ever answered: nothing was missed that matters now.
    if (!closed) log.warn({ err }, 'broadcast: could not subscribe; other processes\' deletes are seen when their entries expire');
  });
  // A process that serves before it is subscribed could keep in memory an image another process deletes
  // meanwhile, and never hear of it: the start waits for the subscription while Redis answers, up to
  // SUBSCRIBE_WAIT_MS; not when Redis refuses the connection (the subscription then comes when it is back).
  const gaveUp = new AbortController();
  await Promise.race([
    subscribed,
    once(subscriber, 'error', { signal: gaveUp.signal }).catch(() => undefined),
    sleep(SUBSCRIBE_WAIT_MS, undefined, { signal: gaveUp.signal, ref: false }).catch(() => undefined),
  ]);
  gaveUp.abort();
  return {
    async publish(topic, message) {
      // This process's own listeners hear it at once, whatever Redis does; Redis brings it back to them too (harmless: deletes).
      listeners.deliver(topic, message);
      try {
        await publisher.publish(channel, JSON.stringify({ topic, message }));
      } catch (err) {
        log.warn({ err, topic }, 'broadcast: could not publish; other processes see it when their entries expire');
      }
    },
    listen: (topic, listener) => listeners.add(topic, listener),
    async close() {
      closed = true;
      subscriber.disconnect();
      publisher.disconnect();
    },
  };
}
