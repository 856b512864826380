/**
 * FileLogStream over real pino-roll transports whose worker fails and exits
 * (its file is a directory), with short waits: stderr hears of the failure
 * once and then at most once per report period, with the lines' count; new
 * transports are tried at growing intervals, and the first that can write
 * takes over, its first line saying what the file missed.
 */
import { mkdirSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import v8 from 'node:v8';
import vm from 'node:vm';
import pino from 'pino';
import { afterEach, describe, expect, it } from 'vitest';
import { FileLogStream, formatDuration, type TransportStream } from '../../../src/platform/log/file-stream.js';

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

async function until(condition: () => boolean, ms = 10_000): Promise<void> {
  for (const end = Date.now() + ms; !condition(); await sleep(10)) {
    if (Date.now() > end) throw new Error('timed out');
  }
}

describe('FileLogStream', () => {
  const dirs: string[] = [];
  const streams: FileLogStream[] = [];
  afterEach(async () => {
    for (const stream of streams.splice(0)) await stream.close(5000);
    for (const dir of dirs.splice(0)) rmSync(dir, { recursive: true, force: true });
  });

  /** A stream to `<dir>/kiln.log` (pino-roll writes kiln.<n>.log), its file made a directory so that it fails. */
  function failingStream(options: { first: number; max: number; reportEveryMs: number }) {
    const dir = mkdtempSync(path.join(os.tmpdir(), 'kiln-log-'));
    dirs.push(dir);
    const file = path.join(dir, 'kiln.1.log');
    mkdirSync(file);
    const opened: number[] = [];
    const transports: WeakRef<TransportStream>[] = [];
    const stderr: string[] = [];
    const stream = new FileLogStream({
      open: () => {
        opened.push(Date.now());
        const transport = pino.transport({ target: 'pino-roll', options: { file: path.join(dir, 'kiln.log'), sync: true } }) as unknown as TransportStream;
        transports.push(new WeakRef(transport));
        return transport;
      },
      gapLine: (gap) => `${JSON.stringify({ gap: true, since: gap.since.getTime(), error: gap.error })}\n`,
      stderr: (text) => void stderr.push(text),
      retryMs: { first: options.first, max: options.max },
      reportEveryMs: options.reportEveryMs,
    });
    streams.push(stream);
    return { stream, file, opened, transports, stderr, reports: () => stderr.filter((t) => t.startsWith('kiln: ')) };
  }

  it('reports a failure once, then once per period with the count, and writes the file again once it can', async () => {
    const { stream, file, opened, stderr, reports } = failingStream({ first: 50, max: 200, reportEveryMs: 500 });
    await until(() => reports().length === 1);
    const failedAt = Date.now();
    expect(reports()[0]).toMatch(/^kiln: log file error: EISDIR.*; its lines go to standard error until it can be written again \(next try in 0 s\)\n$/);

    // A line every 10 ms while new transports fail too, for 1.6 s and at least four of them (a loaded machine starts threads slowly).
    let sent = 0;
    while (Date.now() - failedAt < 1600 || opened.length < 5) {
      if (Date.now() - failedAt > 15_000) throw new Error('too few new transports tried');
      stream.write(`${JSON.stringify({ n: sent++ })}\n`);
      await sleep(10);
    }
    const elapsed = Date.now() - failedAt;
    const lines = stderr.filter((t) => t.startsWith('{'));
    expect(lines).toEqual(Array.from({ length: sent }, (_, n) => `${JSON.stringify({ n })}\n`));
    // A report per 500 ms at most, each with the count so far, where there would be one per line.
    const still = reports().slice(1);
    expect(still.length).toBeGreaterThanOrEqual(2);
    expect(still.length).toBeLessThanOrEqual(Math.floor((elapsed + 20) / 500));
    const counts = still.map((r) => {
      expect(r).toMatch(/^kiln: log file still cannot be written \(EISDIR.*\), for \d+ s: \d+ lines went to standard error instead; (next try in \d+ s|trying again now)\n$/);
      return Number(/: (\d+) lines went/.exec(r)![1]);
    });
    expect(counts).toEqual([...counts].sort((a, b) => a - b));
    expect(counts.at(-1)!).toBeLessThanOrEqual(sent);

    // New transports were tried 50, 100, 200, 200 ... ms after the last failed (plus the time it took to fail).
    const waits = opened.slice(1).map((t, i) => t - opened[i]!);
    expect(waits.length).toBeLessThanOrEqual(Math.ceil(elapsed / 200) + 3);
    waits.forEach((wait, i) => expect(wait).toBeGreaterThanOrEqual(Math.min(50 * 2 ** i, 200) - 2));

    // The directory gone, as a disk with room again: the next try takes over and says so.
    rmSync(file, { recursive: true });
    await until(() => reports().some((r) => r.startsWith('kiln: log file written again')));
    const back = reports().at(-1)!;
    expect(back).toMatch(new RegExp(`^kiln: log file written again after \\d+ s; meanwhile ${sent} lines went to standard error instead\\n$`));
    const before = stderr.length;
    stream.write('{"after":1}\n');
    await stream.close(5000);
    expect(stderr.length).toBe(before);
    const written = readFileSync(file, 'utf8').split('\n').filter((l) => l !== '');
    expect(JSON.parse(written[0]!)).toEqual({ gap: true, since: expect.any(Number), error: expect.stringMatching(/^EISDIR/) });
    expect((JSON.parse(written[0]!) as { since: number }).since).toBeLessThanOrEqual(opened[1]!);
    expect(written.slice(1)).toEqual(['{"after":1}']);
  }, 20_000);

  it('stops trying when closed during a failure, and says once that later lines are not written', async () => {
    const { stream, opened, stderr, reports } = failingStream({ first: 100, max: 100, reportEveryMs: 60_000 });
    await until(() => reports().length === 1);
    stream.write('{"n":1}\n');
    await stream.close(5000);
    expect(reports()[1]).toMatch(/^kiln: log file closed while it could not be written \(EISDIR.*\), for \d+ s: 1 line went to standard error instead\n$/);
    const tries = opened.length;
    stream.write('{"n":2}\n');
    stream.write('{"n":3}\n');
    await sleep(400);
    expect(opened.length).toBe(tries);
    expect(stderr.slice(3)).toEqual(['kiln: a line was logged after the log file was closed; it and any later ones are not written\n']);
  });

  it('counts the lines standard error refuses too', async () => {
    const dir = mkdtempSync(path.join(os.tmpdir(), 'kiln-log-'));
    dirs.push(dir);
    mkdirSync(path.join(dir, 'kiln.1.log'));
    const reports: string[] = [];
    const stream = new FileLogStream({
      open: () => pino.transport({ target: 'pino-roll', options: { file: path.join(dir, 'kiln.log'), sync: true } }) as unknown as TransportStream,
      gapLine: () => '{}\n',
      stderr: (text) => {
        if (!text.startsWith('kiln: ')) throw Object.assign(new Error('EAGAIN'), { code: 'EAGAIN' });
        reports.push(text);
      },
      retryMs: { first: 60_000, max: 60_000 },
      reportEveryMs: 0,
    });
    streams.push(stream);
    await until(() => reports.length === 1);
    stream.write('{"n":1}\n');
    expect(reports[1]).toMatch(/: 0 lines went to standard error instead, 1 line lost \(standard error refused them too\); next try in 1 min\n$/);
  });

  it('lets a transport that failed as it started be collected (4 MB each, one per try)', async () => {
    v8.setFlagsFromString('--expose-gc');
    const gc = vm.runInNewContext('gc') as () => void;
    const { stream, opened, transports } = failingStream({ first: 20, max: 20, reportEveryMs: 60_000 });
    await until(() => opened.length >= 6);
    await stream.close(5000);
    await sleep(300);
    // No deref() between collections: a target deref'd is kept until the current job ends.
    for (let i = 0; i < 3; i++) {
      gc();
      await sleep(50);
    }
    expect(transports.filter((ref) => ref.deref() !== undefined)).toHaveLength(0);
  });

  it('says how long in seconds, minutes and hours', () => {
    expect([999, 59_000, 60_000, 125_000, 3_600_000, 3_780_000].map(formatDuration)).toEqual(['1 s', '59 s', '1 min', '2 min 5 s', '1 h', '1 h 3 min']);
  });
});
