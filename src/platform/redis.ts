/**
 * A Redis client for things Redis is not the truth of (rate-limit counters,
 * the cache, broadcasts): it fails fast rather than making a request wait.
 * No offline queue, so while not connected (Redis down, the first moments
 * after a start) a command fails at once instead of waiting for a
 * reconnect; a command timeout, so a Redis that is connected but stops
 * answering costs a command at most that long; and a breaker, so that it
 * costs that only once in a while: after a command times out, the client's
 * commands fail at once for REDIS_BREAK_MS, then one is let through to look
 * again. ioredis is loaded only by a deployment with REDIS_URL. Also the
 * one way Kiln logs a Redis connection's outages (watchRedisConnection), for
 * these clients and the job queue's and broadcast's own.
 */
import type { Redis } from 'ioredis';
import type { Logger } from 'pino';

/** The longest one command waits for a Redis that is connected but does not answer. */
export const REDIS_COMMAND_TIMEOUT_MS = 500;

/** After a command timed out, how long the client's commands fail without being sent. */
export const REDIS_BREAK_MS = 3000;

/** The message of a command refused while the breaker is open. */
export const REDIS_BREAK_MESSAGE = 'Redis did not answer in time a moment ago; not asked again yet';

/** ioredis's own message for a command past `commandTimeout` (Command.setTimeout). */
const TIMED_OUT = 'Command timed out';

/** The part of ioredis's Command the breaker uses (sendCommand's argument). */
interface SentCommand {
  name: string;
  promise: Promise<unknown>;
  reject(err: Error): void;
}

export async function failFastRedis(url: string): Promise<Redis> {
  const { Redis } = await import('ioredis');
  const client = new Redis(url, { enableOfflineQueue: false, commandTimeout: REDIS_COMMAND_TIMEOUT_MS, maxRetriesPerRequest: 1, connectTimeout: 2000 });
  withBreaker(client);
  return client;
}

/** While a connection stays down, how often a line says it still is. */
export const REDIS_STILL_DOWN_LOG_MS = 60_000;

export interface RedisWatch {
  /**
   * An 'error' handler for something built on the connection that repeats its
   * errors (BullMQ's queue and worker): while the connection is down they are
   * the outage's, counted with it; otherwise they are the emitter's own and
   * logged as a warning under `label`.
   */
  errorsOf(label: string): (err: Error) => void;
}

/**
 * Logs a connection's outages, not each of its errors: ioredis emits an
 * 'error' for every reconnection that fails (about one a second), so a
 * process whose Redis is away would log a warning a second for each of its
 * connections. The first error of an outage is a warning; the ones after it
 * are counted, with a warning a minute while it lasts; the connection ready
 * again is an info line saying how long it was gone. `what` names the
 * connection in each line.
 */
export function watchRedisConnection(
  client: Pick<Redis, 'on' | 'status'>,
  log: Pick<Logger, 'warn' | 'info'>,
  what: string,
  stillDownLogMs = REDIS_STILL_DOWN_LOG_MS,
): RedisWatch {
  let downSince: number | null = null;
  let errors = 0;
  let lastLine = 0;
  const outage = (err: Error): void => {
    const now = Date.now();
    errors++;
    if (downSince === null) {
      downSince = lastLine = now;
      log.warn({ err: err.message, connection: what }, `redis connection error (${what}); retrying, and logging again when it is back`);
    } else if (now - lastLine >= stillDownLogMs) {
      lastLine = now;
      log.warn({ err: err.message, connection: what, downMs: now - downSince, errors }, `redis still unreachable (${what})`);
    }
  };
  client.on('error', outage);
  client.on('ready', () => {
    if (downSince === null) return;
    log.info({ connection: what, downMs: Date.now() - downSince, errors }, `redis connection is back (${what})`);
    downSince = null;
    errors = 0;
  });
  return {
    errorsOf: (label) => (err) => {
      if (client.status === 'ready') log.warn({ err: err.message, connection: what }, label);
      else outage(err);
    },
  };
}

/**
 * Says goodbye to Redis when it is there to hear it, and otherwise just drops
 * the connection: without the offline queue a QUIT fails while not connected,
 * and a client left to reconnect keeps the process alive for good.
 */
export async function closeRedis(client: Redis): Promise<void> {
  if (client.status === 'ready') await client.quit().catch(() => client.disconnect());
  else client.disconnect();
}

/**
 * Wraps the one method every command goes through (plain commands, scripts,
 * pipelines' members). A command sent while the breaker is open is refused at
 * once, except a QUIT, so a close still says goodbye to a Redis that answers
 * again. Once the break is over, commands go out again: the first to time
 * out opens it anew.
 */
function withBreaker(client: Redis): void {
  let openUntil = 0;
  const send = client.sendCommand.bind(client) as (command: SentCommand, stream?: unknown) => Promise<unknown>;
  const wrapped = (command: SentCommand, stream?: unknown): Promise<unknown> => {
    if (Date.now() < openUntil && command.name !== 'quit') {
      command.reject(new Error(REDIS_BREAK_MESSAGE));
      return command.promise;
    }
    const sent = send(command, stream);
    command.promise.catch((err: unknown) => {
      if (err instanceof Error && err.message === TIMED_OUT) openUntil = Date.now() + REDIS_BREAK_MS;
    });
    return sent;
  };
  // sendCommand is ioredis's public extension point (Redis#sendCommand); its Command type is the library's.
  (client as unknown as { sendCommand: typeof wrapped }).sendCommand = wrapped;
}
