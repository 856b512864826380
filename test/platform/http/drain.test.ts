/**
 * Reading out a refused body has an end in time as well as in bytes: a client
 * that trickles its body in, a byte now and then, is cut off after the total
 * bound (platform/http/drain.ts), not kept for as long as it keeps sending.
 */
import type { AddressInfo } from 'node:net';
import Fastify from 'fastify';
import { describe, expect, it } from 'vitest';
import { drainUnreadBody } from '../../../src/platform/http/drain.js';
import { RawConnection } from '../../helpers/raw-http.js';

describe('reading out a refused body', () => {
  it('gives up after the total bound however the body trickles in: the connection is closed', async () => {
    const app = Fastify();
    // Refused before the body is read, as an upload without credentials is: 3 s without a byte, 1.5 s in all.
    app.addHook('onRequest', async (request, reply) => {
      await drainUnreadBody(request, reply, 1_000_000, 3000, 1500);
      return reply.code(401).send({ refused: true });
    });
    app.post('/upload', async () => 'never');
    await app.listen({ host: '127.0.0.1', port: 0 });
    const conn = await RawConnection.open(`http://127.0.0.1:${(app.server.address() as AddressInfo).port}`);
    try {
      const started = performance.now();
      conn.send('POST /upload HTTP/1.1\r\nHost: x\r\nContent-Type: application/octet-stream\r\nContent-Length: 1000\r\n\r\n');
      // A byte every 200 ms: the idle bound (3 s) never comes, and the whole body would take 200 s.
      const trickle = setInterval(() => !conn.socket.destroyed && conn.socket.write('a'), 200);
      await new Promise<void>((resolve) => conn.socket.once('close', () => resolve()));
      clearInterval(trickle);
      const elapsed = performance.now() - started;
      // The total bound, not the idle one (3 s), however slow the machine.
      expect(elapsed).toBeGreaterThanOrEqual(1400);
      expect(elapsed).toBeLessThan(2900);
    } finally {
      conn.destroy();
      await app.close();
    }
  });
});
