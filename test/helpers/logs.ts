import { readdirSync, readFileSync } from 'node:fs';
import path from 'node:path';

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
