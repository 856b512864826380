/**
 * Reading out a request body that a route refused before reading it (401,
 * 403, 404, 413, 429 on an upload). Answering while the client is still
 * sending, and closing, makes the client's next writes meet a reset, and a
 * client that reads only once it has sent everything (most do) never sees
 * the answer. So the rest is read and dropped first, and the answer goes
 * after it. Past a bound of bytes, when the client sends nothing for a
 * while, or once reading out has taken long enough, the connection is closed
 * instead, as a web server's lingering close does.
 */
import type { FastifyReply, FastifyRequest } from 'fastify';
import type { Config } from '../../config.js';
import { continueWithheld } from './continue.js';

/**
 * The most a refused body may still send before the connection is closed
 * instead: the largest body the route takes, its files at MAX_UPLOAD_SIZE each
 * and as much again for the rest. A route says how many files it takes
 * (`config.mostFiles`: the pipeline's 200 photos); every other route is
 * bounded as the custom-order upload, the largest of them.
 */
export function readOutBound(config: Pick<Config, 'maxUploadSize' | 'maxFilesPerOrder'>, mostFiles: number | undefined): number {
  return config.maxUploadSize * (Math.max(mostFiles ?? 0, config.maxFilesPerOrder) + 1);
}

declare module 'fastify' {
  interface FastifyContextConfig {
    /** The most files one body of this upload route carries, when more than MAX_FILES_PER_ORDER (readOutBound). */
    mostFiles?: number;
  }
}

/** A client that sends nothing for this long while its body is read out is cut off. */
const DRAIN_IDLE_MS = 10_000;
/**
 * Nor is a refused body read out for longer than this in all, however it
 * trickles in (a byte every few seconds kept one connection for 5 minutes,
 * without credentials): nginx's lingering_time.
 */
const DRAIN_TOTAL_MS = 30_000;

/**
 * Resolves once the unread rest of the body has arrived and been dropped, at
 * once when there is none; when it gives up it destroys the connection and
 * resolves too. The answer carries `Connection: close` whenever a body was
 * left unread.
 */
export function drainUnreadBody(request: FastifyRequest, reply: FastifyReply, maxBytes: number, idleMs = DRAIN_IDLE_MS, totalMs = DRAIN_TOTAL_MS): Promise<void> {
  const raw = request.raw;
  // A request without a body (a GET), or whose body has all arrived, leaves nothing to read out:
  // Node drops what is unread, and the connection can serve the next request.
  if (raw.complete || raw.readableEnded || raw.destroyed) return Promise.resolve();
  // A partly read body cannot be followed by another request on this connection.
  reply.header('connection', 'close');
  // A client still waiting for its 100 Continue has sent no body: the answer goes at once (continue.ts). One that
  // sent its body without waiting (RFC 9110 lets it) is read out as any other, lest the close reset it mid-send.
  if (continueWithheld(raw) && raw.readableLength === 0) return Promise.resolve();
  return new Promise((resolve) => {
    let seen = 0;
    const done = (): void => {
      clearTimeout(idle);
      clearTimeout(total);
      raw.off('data', onData);
      raw.off('end', done);
      raw.off('close', done);
      raw.off('error', done);
      resolve();
    };
    const giveUp = (): void => {
      done();
      raw.socket?.destroy();
    };
    const idle = setTimeout(giveUp, idleMs);
    const total = setTimeout(giveUp, totalMs);
    const onData = (chunk: Buffer): void => {
      seen += chunk.length;
      if (seen > maxBytes) giveUp();
      else idle.refresh();
    };
    // A multipart parser still piped from the request would hold the flow back as soon as a part
    // nobody reads fills its buffer (the parts after a refused photo): cut it loose, what is left is dropped.
    raw.unpipe();
    raw.on('data', onData);
    raw.once('end', done);
    raw.once('close', done);
    raw.once('error', done);
    raw.resume();
  });
}
