/**
 * Reading out a request body that a route refused before reading it (401,
 * 404, 413, 429 on an upload). Answering and leaving the body unread makes
 * the client's still-sending socket see a reset instead of our answer. So the
 * rest is read and dropped, up to a bound; past it the connection is closed,
 * as a web server's lingering close does.
 */
import type { FastifyReply, FastifyRequest } from 'fastify';

export function drainUnreadBody(request: FastifyRequest, reply: FastifyReply, maxBytes: number): void {
  const raw = request.raw;
  // A request without a body (a GET), or whose body has all arrived, leaves nothing to read out:
  // Node drops what is unread, and the connection can serve the next request.
  if (raw.complete || raw.readableEnded || raw.destroyed) return;
  let seen = 0;
  const onData = (chunk: Buffer) => {
    seen += chunk.length;
    if (seen > maxBytes) {
      raw.off('data', onData);
      raw.socket?.destroy();
    }
  };
  raw.on('data', onData);
  raw.once('end', () => raw.off('data', onData));
  raw.resume();
  // A partly read body cannot be followed by another request on this connection.
  reply.header('connection', 'close');
}
