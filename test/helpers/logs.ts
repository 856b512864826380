import { mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { Writable } from 'node:stream';
import pino from 'pino';
import type { Config } from '../../src/config.js';
import { loggerOptions } from '../../src/platform/log/index.js';

/**
 * The text of every log file in a LOG_FILE directory (pino-roll's
 * `kiln.<date>.<n>.log` files, in name order), skipping `current.log`, the
 * link to one of them. pino writes through a worker thread: read after the
 * logger (the server's Context) is closed, when every line is on disk.
 */
export function readLogText(dir: string): string {
  return readdirSync(dir)
    .filter((name) => name.endsWith('.log') && name !== 'current.log')
    .sort()
    .map((name) => readFileSync(path.join(dir, name), 'utf8'))
    .join('');
}

/** The JSON lines of a LOG_FILE directory's log files (see readLogText), parsed. */
export function readLogLines<T = Record<string, unknown>>(dir: string): T[] {
  return readLogText(dir)
    .split('\n')
    .filter((line) => line !== '')
    .map((line) => JSON.parse(line) as T);
}

/**
 * A LOG_FILE directory of a test's own: `env` points a server at it
 * (warnings and up unless `level` says otherwise), `lines()` reads it once
 * the server is closed, `remove()` deletes it.
 */
export function logDirectory<T = Record<string, unknown>>(level = 'warn'): { env: Record<string, string>; lines(): T[]; remove(): void } {
  const dir = mkdtempSync(path.join(os.tmpdir(), 'kiln-test-log-'));
  return {
    env: { LOG_FILE: path.join(dir, 'kiln.log'), LOG_LEVEL: level },
    lines: () => readLogLines<T>(dir),
    remove: () => rmSync(dir, { recursive: true, force: true }),
  };
}

/** Kiln's own logger (its scrubbing included) whose lines are kept, parsed, in memory. */
export function capturingLog<T = Record<string, unknown>>(level: Config['logLevel'] = 'info'): { log: pino.Logger; lines: T[] } {
  const lines: T[] = [];
  const sink = new Writable({
    write(chunk: Buffer, _encoding, done) {
      for (const text of chunk.toString('utf8').split('\n')) if (text) lines.push(JSON.parse(text) as T);
      done();
    },
  });
  return { log: pino(loggerOptions({ logLevel: level }), sink), lines };
}
