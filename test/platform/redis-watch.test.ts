/**
 * A Redis connection's outage is logged once, not once per reconnection: the
 * first error as a warning, a reminder while it lasts, and a line when the
 * connection is back. Real ioredis clients against a port nothing listens on,
 * then a relay to the real Redis on that same port.
 */
import { afterEach, describe, expect, it } from 'vitest';
import { closeRedis, failFastRedis, watchRedisConnection } from '../../src/platform/redis.js';
import { capturingLog } from '../helpers/logs.js';
import { closedPort } from '../helpers/redis.js';
import { tcpRelay } from '../helpers/relay.js';

const REDIS_URL = process.env.TEST_REDIS_URL;
const cleanups: Array<() => Promise<void> | void> = [];
afterEach(async () => {
  for (const cleanup of cleanups.splice(0).reverse()) await cleanup();
});

interface Line {
  level: number;
  msg: string;
  connection?: string;
  errors?: number;
  downMs?: number;
}

/** A fail-fast client looking for Redis on `port`, and how many 'error' events it has emitted. */
async function clientOn(port: number): Promise<{ client: Awaited<ReturnType<typeof failFastRedis>>; errors: () => number }> {
  const client = await failFastRedis(`redis://127.0.0.1:${port}`);
  cleanups.push(() => closeRedis(client));
  let errors = 0;
  client.on('error', () => errors++);
  return { client, errors: () => errors };
}

const WARN = 40;
const INFO = 30;

describe('watchRedisConnection', () => {
  it('logs one warning for an outage of many failed reconnections', async () => {
    const { log, lines } = capturingLog<Line>();
    const { client, errors } = await clientOn(await closedPort());
    watchRedisConnection(client, log, 'test');
    await expect.poll(errors).toBeGreaterThanOrEqual(4);
    expect(lines.map((l) => [l.level, l.msg, l.connection])).toEqual([[WARN, 'redis connection error (test); retrying, and logging again when it is back', 'test']]);
  });

  it('reminds while the outage lasts, with the errors counted so far', async () => {
    const { log, lines } = capturingLog<Line>();
    const { client, errors } = await clientOn(await closedPort());
    watchRedisConnection(client, log, 'test', 300);
    await expect.poll(() => lines.filter((l) => l.msg === 'redis still unreachable (test)').length).toBeGreaterThanOrEqual(1);
    const reminder = lines.find((l) => l.msg === 'redis still unreachable (test)') as Line;
    expect(reminder.level).toBe(WARN);
    expect(reminder.errors).toBeGreaterThanOrEqual(2);
    expect(reminder.downMs).toBeGreaterThanOrEqual(300);
    // Far fewer lines than errors.
    expect(lines.length).toBeLessThan(errors());
  });

  describe.skipIf(!REDIS_URL)(`with Redis coming up${REDIS_URL ? '' : ' (skipped: TEST_REDIS_URL is not set)'}`, () => {
    it('says when the connection is back, how long it was gone and how many errors it cost; a later outage is logged anew', async () => {
      const { log, lines } = capturingLog<Line>();
      const port = await closedPort();
      const { client, errors } = await clientOn(port);
      watchRedisConnection(client, log, 'test');
      await expect.poll(errors).toBeGreaterThanOrEqual(3);
      const relay = await tcpRelay(new URL(REDIS_URL as string), 6379, { port });
      cleanups.push(() => relay.close());
      await expect.poll(() => lines.find((l) => l.msg === 'redis connection is back (test)')).toBeTruthy();
      const back = lines.find((l) => l.msg === 'redis connection is back (test)') as Line;
      expect(back).toMatchObject({ level: INFO, connection: 'test' });
      expect(back.errors).toBeGreaterThanOrEqual(3);
      expect(back.downMs).toBeGreaterThan(0);
      expect(lines.filter((l) => l.level === WARN)).toHaveLength(1);
      expect(await client.ping()).toBe('PONG');

      // Redis goes away again: a new outage, a new warning.
      await relay.close();
      await expect.poll(() => lines.filter((l) => l.level === WARN).length).toBe(2);
    });

    it('logs an error of something built on a ready connection as its own, and counts it with the outage while the connection is down', async () => {
      const { log, lines } = capturingLog<Line>();
      const up = await failFastRedis(REDIS_URL as string);
      cleanups.push(() => closeRedis(up));
      const upWatch = watchRedisConnection(up, log, 'up');
      await expect.poll(() => up.status).toBe('ready');
      upWatch.errorsOf('bullmq worker error')(new Error('Missing lock for job 7'));
      expect(lines).toEqual([expect.objectContaining({ level: WARN, msg: 'bullmq worker error', connection: 'up' })]);

      const { client, errors } = await clientOn(await closedPort());
      const downWatch = watchRedisConnection(client, log, 'down');
      await expect.poll(errors).toBeGreaterThanOrEqual(1);
      downWatch.errorsOf('bullmq worker error')(new Error('connect ECONNREFUSED'));
      expect(lines.filter((l) => l.connection === 'down')).toHaveLength(1);
    });
  });
});
