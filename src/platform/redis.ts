/**
 * A Redis client for things Redis is not the truth of (rate-limit counters,
 * the cache, broadcasts): it fails fast rather than making a request wait.
 * No offline queue, so while not connected (Redis down, the first moments
 * after a start) a command fails at once instead of waiting for a
 * reconnect; a command timeout, so a Redis that is connected but stops
 * answering costs a command at most that long; and a breaker, so that it
 * costs that only once in a while: after a command times out, the client's
 * commands fail at once for REDIS_BREAK_MS, then one is let through to look
 * again. ioredis is loaded only by a deployment with REDIS_URL.
 */
import type { Redis } from 'ioredis';

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
