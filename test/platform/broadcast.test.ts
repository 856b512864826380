/**
 * The broadcast over Redis: messages go out on `<REDIS_PREFIX>:broadcast`,
 * and publishing is best effort: it never throws and never waits long on a
 * Redis that is gone or hangs, and this process's own listeners hear it anyway.
 */
import { Redis } from 'ioredis';
import pino from 'pino';
import { afterEach, describe, expect, it } from 'vitest';
import { createContext } from '../../src/context.js';
import { redisBroadcast } from '../../src/platform/broadcast.js';
import { tempDataDir, testConfig } from '../helpers/config.js';
import { closedPort, dropRedisPrefix, newPrefix, relayTo } from '../helpers/redis.js';
import { tcpRelay } from '../helpers/relay.js';

const REDIS_URL = process.env.TEST_REDIS_URL;
const silentLog = pino({ level: 'silent' });
const cleanups: Array<() => Promise<void> | void> = [];

afterEach(async () => {
  for (const cleanup of cleanups.splice(0).reverse()) await cleanup();
});

/** A raw subscriber to `channel` on the real Redis, and the messages it has heard. */
async function subscribe(channel: string): Promise<string[]> {
  const heard: string[] = [];
  const raw = new Redis(REDIS_URL as string);
  cleanups.push(() => raw.disconnect());
  raw.on('message', (ch: string, text: string) => {
    if (ch === channel) heard.push(text);
  });
  await raw.subscribe(channel);
  return heard;
}

describe.skipIf(!REDIS_URL)(`the Redis broadcast${REDIS_URL ? '' : ' (skipped: TEST_REDIS_URL is not set)'}`, () => {
  it('publishes on <REDIS_PREFIX>:broadcast', async () => {
    const prefix = newPrefix();
    cleanups.push(() => dropRedisPrefix(REDIS_URL as string, prefix));
    const heard = await subscribe(`${prefix}:broadcast`);
    const temp = tempDataDir();
    cleanups.push(temp.cleanup);
    const ctx = await createContext(testConfig(temp.dir, { REDIS_URL: REDIS_URL as string, REDIS_PREFIX: prefix }));
    cleanups.push(() => ctx.close());
    // The publisher fails fast until it has connected: publish until Redis carries one.
    await expect
      .poll(async () => {
        await ctx.broadcast.publish('gallery-image-deleted', 'img_123');
        return heard.length;
      }, { timeout: 15_000, interval: 50 })
      .toBeGreaterThan(0);
    expect(JSON.parse(heard[0]!)).toEqual({ topic: 'gallery-image-deleted', message: 'img_123' });
  });

  it('is subscribed when it is made: a process does not serve before it can hear the others\' deletes', async () => {
    const prefix = newPrefix();
    // Connected before, so that its question reaches Redis the moment the broadcast is made.
    const other = new Redis(REDIS_URL as string);
    cleanups.push(() => other.disconnect());
    await other.ping();
    const broadcast = await redisBroadcast(REDIS_URL as string, prefix, silentLog);
    cleanups.push(() => broadcast.close());
    expect(await other.pubsub('NUMSUB', `${prefix}:broadcast`)).toEqual([`${prefix}:broadcast`, 1]);
  });

  it('a process started while Redis is unreachable subscribes once Redis comes up, and hears the others from then on', async () => {
    const prefix = newPrefix();
    const port = await closedPort();
    const heard: string[] = [];
    const late = await redisBroadcast(`redis://127.0.0.1:${port}`, prefix, silentLog);
    cleanups.push(() => late.close());
    late.listen('gallery-image-deleted', (message) => heard.push(message));
    // Several reconnections go by; then Redis answers where the process has been looking for it.
    await new Promise((r) => setTimeout(r, 1500));
    const relay = await tcpRelay(new URL(REDIS_URL as string), 6379, { port });
    cleanups.push(() => relay.close());
    const other = new Redis(REDIS_URL as string);
    cleanups.push(() => other.disconnect());
    await expect
      .poll(async () => {
        await other.publish(`${prefix}:broadcast`, JSON.stringify({ topic: 'gallery-image-deleted', message: 'img_late' }));
        return heard;
      }, { timeout: 10_000, interval: 100 })
      .toContain('img_late');
  });

  it('never throws on publish when Redis hangs or is gone, answers quickly, and still tells local listeners', async () => {
    const prefix = newPrefix();
    const relay = await relayTo(new URL(REDIS_URL as string));
    cleanups.push(() => relay.close());
    relay.release();
    const hanging = await redisBroadcast(relay.url, prefix, silentLog);
    // Closed before the relay is (cleanups run in reverse).
    cleanups.push(() => hanging.close());
    const local: string[] = [];
    hanging.listen('topic', (m) => local.push(m));
    // Working first, so the publish below really goes out to a connected Redis that then stops answering.
    const heard = await subscribe(`${prefix}:broadcast`);
    await expect
      .poll(async () => {
        await hanging.publish('topic', 'warm-up');
        return heard.length;
      }, { timeout: 15_000, interval: 50 })
      .toBeGreaterThan(0);

    relay.freeze();
    let started = Date.now();
    await expect(hanging.publish('topic', 'while-frozen')).resolves.toBeUndefined();
    expect(Date.now() - started).toBeLessThan(2000);
    expect(local).toContain('while-frozen');

    const gone = await redisBroadcast(`redis://127.0.0.1:${await closedPort()}`, prefix, silentLog);
    cleanups.push(() => gone.close());
    const goneLocal: string[] = [];
    gone.listen('topic', (m) => goneLocal.push(m));
    started = Date.now();
    await expect(gone.publish('topic', 'no-redis')).resolves.toBeUndefined();
    expect(Date.now() - started).toBeLessThan(2000);
    expect(goneLocal).toEqual(['no-redis']);
  });
});
