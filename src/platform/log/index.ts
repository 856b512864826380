/**
 * The process logger: pino JSON lines to stdout, or with LOG_FILE to a file
 * rotated by size and by day (pino-roll, in a worker thread). The request
 * line itself is written by app.ts's onResponse hook (reqId, method, route,
 * url, status, ms).
 *
 * Secrets never reach a line, in three layers: every logged value is walked
 * by `scrubValue` (secret-named keys, bearer tokens, JWTs, `password=…`
 * pairs; errors through the same walk), requests are logged as method and
 * path only (no headers, no query), and the finished line loses any bearer
 * token or JWT left. The pino `redact` paths below stay as a fixed backstop.
 *
 * A log file that cannot be written (a full disk) does not stop logging:
 * its lines go to standard error until a new transport can write the file
 * again (file-stream.ts).
 */
import { accessSync, closeSync, constants, fstatSync, openSync, readSync, statSync } from 'node:fs';
import { makeDirectorySync } from '../files.js';
import path from 'node:path';
import pino, { type Logger } from 'pino';
import type { Config } from '../../config.js';
import { ConfigError, failureOf } from '../../config/env.js';
import { FileLogStream, formatDuration, type LogGap, type TransportStream } from './file-stream.js';
import { CENSOR, scrubFields, scrubLine, scrubString, serializeError, serializeRequest, serializeResponse } from './scrub.js';

export { CENSOR, scrubLine, scrubString, scrubValue, serializeError } from './scrub.js';

export const REDACT_PATHS = [
  'req.headers.authorization',
  'req.headers["x-api-key"]',
  'req.headers.cookie',
  'res.headers["set-cookie"]',
  'headers.authorization',
  'headers["x-api-key"]',
  'headers.cookie',
  'password',
  'current_password',
  'new_password',
  'refresh_token',
  'access_token',
  'token',
  'key',
  'apiKey',
  'api_key',
  '*.password',
  '*.current_password',
  '*.new_password',
  '*.refresh_token',
  '*.access_token',
  '*.token',
  '*.apiKey',
  '*.api_key',
  '*.headers.authorization',
  '*.headers["x-api-key"]',
  '*.headers.cookie',
];

/** Fields whose own serializer turns a live object (a request, a response) into a few safe fields. */
const SERIALIZED_AS_IS = new Set(['req', 'res']);

/** File destinations this module opened, so closeLogger can end exactly those (never stdout). */
const transports = new WeakMap<Logger, FileLogStream>();

export type LogConfig = Pick<Config, 'logLevel' | 'logFile' | 'logMaxSize' | 'logKeep'>;

export function loggerOptions(config: Pick<Config, 'logLevel'>): pino.LoggerOptions {
  return {
    level: config.logLevel,
    base: { service: 'kiln' },
    timestamp: pino.stdTimeFunctions.isoTime,
    redact: { paths: REDACT_PATHS, censor: CENSOR },
    serializers: { err: serializeError, error: serializeError, req: serializeRequest, res: serializeResponse },
    formatters: {
      log: (fields) => scrubFields(fields, SERIALIZED_AS_IS),
    },
    hooks: {
      logMethod(args, method) {
        const [first, second] = args as unknown[];
        const scrubbed = (args as unknown[]).map((a) => (typeof a === 'string' ? scrubString(a) : a));
        // Without a message pino takes the error's own message, past the field walk; give it a scrubbed one.
        if (typeof first === 'object' && first !== null && typeof second !== 'string') {
          const err = first instanceof Error ? first : (first as { err?: unknown }).err;
          if (err instanceof Error) scrubbed.splice(1, 0, scrubString(err.message));
        }
        // pino's LogFn overloads cannot be spread from an unknown[]; the arguments are the caller's, only scrubbed.
        return (method as (...a: unknown[]) => void).apply(this, scrubbed);
      },
      streamWrite: scrubLine,
    },
  };
}

/**
 * pino-roll file names: `<name>.<yyyy-MM-dd>.<n>.<ext>` beside LOG_FILE,
 * plus a `current.log` symlink to the file being written. A new file starts
 * at LOG_MAX_SIZE and at midnight; the oldest go so that LOG_KEEP remain
 * (counting the current one), including files left by earlier runs.
 */
function rollOptions(config: LogConfig & { logFile: string }): Record<string, unknown> {
  return {
    file: path.resolve(config.logFile),
    size: config.logMaxSize,
    frequency: 'daily',
    dateFormat: 'yyyy-MM-dd',
    mkdir: true,
    symlink: true,
    // Sync writes in the worker thread (never the event loop) make a rotation create the new file
    // before pino-roll counts files, so exactly LOG_KEEP remain rather than one more.
    sync: true,
    limit: { count: config.logKeep, removeOtherLogFiles: true },
  };
}

/**
 * LOG_FILE's directory is made (as pino-roll would) and must be writable
 * here, before the log's worker thread starts: a worker that cannot write
 * drops every line and, on some paths, keeps the process from exiting.
 */
function checkWritable(logFile: string): void {
  const file = path.resolve(logFile);
  const dir = path.dirname(file);
  try {
    makeDirectorySync(dir);
    accessSync(dir, constants.W_OK);
  } catch (err) {
    throw new ConfigError('LOG_FILE', `cannot write log files in ${dir} (${failureOf(err)})`);
  }
  if (statSync(file, { throwIfNoEntry: false })?.isDirectory()) {
    throw new ConfigError('LOG_FILE', `${file} is a directory; name a file in it, such as ${path.join(file, 'kiln.log')}`);
  }
}

/**
 * Whether the file current.log points to ends inside a line: the disk had
 * room for only part of the last write. The next line then starts on a new
 * one rather than finishing that line as invalid JSON.
 */
function endsMidLine(logFile: string): boolean {
  let fd: number | undefined;
  try {
    fd = openSync(path.join(path.dirname(path.resolve(logFile)), 'current.log'), 'r');
    const size = fstatSync(fd).size;
    if (size === 0) return false;
    const last = Buffer.alloc(1);
    readSync(fd, last, 0, 1, size - 1);
    return last[0] !== 0x0a;
  } catch {
    // No file yet (or none readable): nothing to finish.
    return false;
  } finally {
    if (fd !== undefined) closeSync(fd);
  }
}

/** The first line of a transport that replaces a failed one: in the file, what the file is missing and why. */
function gapLine(logFile: string, gap: LogGap): string {
  const line = JSON.stringify({
    level: 40,
    time: new Date().toISOString(),
    service: 'kiln',
    msg:
      `the log file could not be written for ${formatDuration(Date.now() - gap.since.getTime())} (${gap.error}); ` +
      'the lines logged meanwhile went to standard error',
    since: gap.since.toISOString(),
  });
  return `${endsMidLine(logFile) ? '\n' : ''}${line}\n`;
}

/**
 * `stderr`: a one-shot command (`kiln migrate`, `users create`, `blobs
 * sweep`), whose standard output is its result for a script to read. With
 * LOG_FILE set, every process logs to the file.
 */
export function createLogger(config: LogConfig, to: 'stdout' | 'stderr' = 'stdout'): Logger {
  const options = loggerOptions(config);
  if (!config.logFile) return to === 'stderr' ? pino(options, pino.destination({ fd: 2, sync: true })) : pino(options);
  const logFile = config.logFile;
  checkWritable(logFile);
  const roll = rollOptions({ ...config, logFile });
  const stream = new FileLogStream({
    // pino.transport returns a ThreadStream, typed by pino as a plain stream.
    open: () => pino.transport({ target: 'pino-roll', options: roll }) as unknown as TransportStream,
    gapLine: (gap) => gapLine(logFile, gap),
  });
  const logger = pino(options, stream);
  transports.set(logger, stream);
  return logger;
}

/**
 * A logger for the one line per request, writing to the same destination as
 * `logger` at the same level but without the scrubbing layers: its fields
 * are built by app.ts from safe parts only (request id, method, route
 * pattern, path, status, duration), and on a hot GET the field walk, the
 * redact paths and the line regexes cost more than the rest of the request
 * (measured in docs/performance.md, "Serving"). The path is the one
 * caller-controlled field, so it still goes through `scrubString`.
 */
export function createAccessLogger(logger: Logger): Logger {
  const destination = (logger as unknown as Record<symbol, pino.DestinationStream>)[pino.symbols.streamSym];
  return pino(
    { level: logger.level, base: { service: 'kiln' }, timestamp: pino.stdTimeFunctions.isoTime },
    destination,
  );
}

/**
 * Writes out every buffered line and, for a file logger, ends its worker
 * thread (and any retry of a file that could not be written). Lines logged
 * afterwards are lost (reported once on stderr).
 */
export async function closeLogger(logger: Logger, timeoutMs = 5000): Promise<void> {
  const stream = transports.get(logger);
  if (!stream) {
    logger.flush();
    return;
  }
  transports.delete(logger);
  await stream.close(timeoutMs);
}

/**
 * A request's logger, made only when something logs through it. Fastify
 * builds `request.log` for every request; with the scrubbing options a pino
 * child costs more than a cached image GET does, and most requests never log
 * (their one line comes from the access logger). Methods live on the
 * prototype so the wrapper itself costs one small object.
 */
class LazyChildLogger {
  private real: Logger | undefined;

  constructor(
    private readonly parent: Logger,
    private readonly childBindings: pino.Bindings,
    private readonly options: pino.ChildLoggerOptions | undefined,
  ) {}

  private get logger(): Logger {
    return (this.real ??= this.parent.child(this.childBindings, this.options));
  }

  get level(): string {
    return (this.real ?? this.parent).level;
  }

  set level(value: string) {
    this.logger.level = value;
  }

  // pino's LogFn overloads cannot be forwarded from unknown[]; the arguments pass through untouched.
  fatal(...args: unknown[]): void {
    (this.logger.fatal as (...a: unknown[]) => void)(...args);
  }
  error(...args: unknown[]): void {
    (this.logger.error as (...a: unknown[]) => void)(...args);
  }
  warn(...args: unknown[]): void {
    (this.logger.warn as (...a: unknown[]) => void)(...args);
  }
  info(...args: unknown[]): void {
    (this.logger.info as (...a: unknown[]) => void)(...args);
  }
  debug(...args: unknown[]): void {
    (this.logger.debug as (...a: unknown[]) => void)(...args);
  }
  trace(...args: unknown[]): void {
    (this.logger.trace as (...a: unknown[]) => void)(...args);
  }
  silent(): void {}

  child(bindings: pino.Bindings, options?: pino.ChildLoggerOptions): Logger {
    return this.logger.child(bindings, options);
  }

  bindings(): pino.Bindings {
    return { ...this.parent.bindings(), ...this.childBindings };
  }

  isLevelEnabled(level: string): boolean {
    return this.parent.isLevelEnabled(level);
  }

  flush(): void {
    this.parent.flush();
  }
}

export function lazyChildLogger(parent: Logger, bindings: pino.Bindings, options?: pino.ChildLoggerOptions): Logger {
  // Only the methods Fastify and our code call on request.log exist; that is what the cast asserts.
  return new LazyChildLogger(parent, bindings, options) as unknown as Logger;
}
