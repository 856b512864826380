/**
 * Redis for tests: a key prefix of a test's own and its removal, and Redis
 * made unreachable or unresponsive on purpose, for tests of what Kiln does then.
 */
import { randomBytes } from 'node:crypto';
import { Redis } from 'ioredis';
import { createServer, type AddressInfo } from 'node:net';
import { tcpRelay, type TcpRelay } from './relay.js';

export function newPrefix(): string {
  return `kiln-test-${randomBytes(5).toString('hex')}`;
}

/** Deletes every Redis key under `prefix`. */
export async function dropRedisPrefix(url: string, prefix: string): Promise<void> {
  const redis = new Redis(url);
  try {
    let cursor = '0';
    do {
      const [next, keys] = await redis.scan(cursor, 'MATCH', `${prefix}:*`, 'COUNT', 500);
      cursor = next;
      if (keys.length > 0) await redis.del(...keys);
    } while (cursor !== '0');
  } finally {
    redis.disconnect();
  }
}

/** A port nothing listens on: bound for a moment, then released. */
export async function closedPort(): Promise<number> {
  const server = createServer();
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as AddressInfo;
  await new Promise<void>((resolve) => server.close(() => resolve()));
  return port;
}

/**
 * A TCP relay to a real Redis (helpers/relay.ts). It starts holding back what
 * clients send (a connection that is not ready yet) until release(); once
 * frozen it passes nothing on any more, like a Redis that hangs or a network
 * that drops packets.
 */
export function relayTo(target: URL): Promise<TcpRelay> {
  return tcpRelay(target, 6379, { held: true });
}

