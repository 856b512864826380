import { spawn } from 'node:child_process';
import { existsSync, lstatSync, mkdtempSync, readdirSync, readFileSync, readlinkSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { closeLogger, createLogger } from '../../../src/platform/log/index.js';

const ROLLED = /^kiln\.\d{4}-\d\d-\d\d\.(\d+)\.log$/;

function rolledFiles(dir: string): { name: string; number: number }[] {
  return readdirSync(dir)
    .map((name) => ({ name, match: ROLLED.exec(name) }))
    .filter((f) => f.match !== null)
    .map((f) => ({ name: f.name, number: Number(f.match![1]) }))
    .sort((a, b) => a.number - b.number);
}

/**
 * The worker thread opens the file some time after createLogger returns, and
 * lines logged before that arrive as one large write (one rotation at most).
 * pino-roll makes the current.log link once its file is open.
 */
async function transportReady(dir: string): Promise<void> {
  const link = path.join(dir, 'current.log');
  for (let waited = 0; waited < 15_000; waited += 20) {
    if (existsSync(path.dirname(link)) && readdirSync(path.dirname(link)).includes('current.log') && lstatSync(link).isSymbolicLink()) return;
    await new Promise((resolve) => setTimeout(resolve, 20));
  }
  throw new Error('the log transport did not start');
}

/** Writes in bursts with pauses, as a server would, so the worker sees many writes and rolls between them. */
async function writeLines(log: ReturnType<typeof createLogger>, count: number, tag: string): Promise<void> {
  for (let i = 0; i < count; i++) {
    log.info({ i, tag, filler: 'x'.repeat(100) }, 'line');
    if (i % 10 === 9) await new Promise((resolve) => setTimeout(resolve, 5));
  }
}

/**
 * A `--require` preload (preloads of that kind run in worker threads too,
 * `--import` ones do not) that gives every worker thread, the log
 * transport's among them, a clock reading today at KILN_FAKE_TIME (local
 * HH:MM:SS) at the thread's first `Date.now()` / `new Date()`; from there it
 * runs at the normal pace. In the log thread that first call is pino-roll's
 * own, as it starts (it names the first file and times the next roll from
 * it), so however long the thread took to load, the log starts at
 * KILN_FAKE_TIME. The main thread keeps the real time.
 */
const CLOCK_PRELOAD = `
const { isMainThread } = require('node:worker_threads');
const at = /^(\\d\\d):(\\d\\d):(\\d\\d)$/.exec(process.env.KILN_FAKE_TIME || '');
if (!isMainThread && at) {
  const RealDate = Date;
  let offset;
  const fakeNow = () => {
    if (offset === undefined) {
      const target = new RealDate();
      target.setHours(Number(at[1]), Number(at[2]), Number(at[3]), 0);
      offset = target.getTime() - RealDate.now();
    }
    return RealDate.now() + offset;
  };
  globalThis.Date = class extends RealDate {
    constructor(...args) {
      if (args.length === 0) super(fakeNow());
      else super(...args);
    }
    static now() {
      return fakeNow();
    }
  };
}
`;
const LOG_FOR = path.join(import.meta.dirname, 'fixtures', 'log-for.ts');

/**
 * Runs fixtures/log-for.ts: `kiln.log` in `dir`, its log thread's clock at `fakeTime` as the transport
 * starts, logging for `ms` once the file is open, the last line at or after `ms`.
 */
async function logAcross(dir: string, clockFile: string, fakeTime: string, ms: number): Promise<void> {
  // Through NODE_OPTIONS, which pino hands on to its transport's worker thread (a --require on the command line it does not).
  const child = spawn(process.execPath, ['--import', 'tsx', LOG_FOR, path.join(dir, 'kiln.log'), String(ms)], {
    env: { ...process.env, NODE_OPTIONS: `${process.env.NODE_OPTIONS ?? ''} --require ${JSON.stringify(clockFile)}`.trim(), TZ: 'UTC', KILN_FAKE_TIME: fakeTime },
    stdio: ['ignore', 'ignore', 'pipe'],
  });
  let stderr = '';
  child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
  const code = await new Promise<number | null>((resolve) => child.once('exit', resolve));
  expect(code, stderr).toBe(0);
}

/** `kiln.<date>.<n>.log` files of `dir` in the order they were written, with their lines' numbers. */
function datedFiles(dir: string): { name: string; date: string; ticks: number[] }[] {
  return readdirSync(dir)
    .map((name) => ({ name, match: /^kiln\.(\d{4}-\d\d-\d\d)\.(\d+)\.log$/.exec(name) }))
    .filter((f) => f.match !== null)
    .sort((a, b) => a.match![1]!.localeCompare(b.match![1]!) || Number(a.match![2]) - Number(b.match![2]))
    .map((f) => ({
      name: f.name,
      date: f.match![1]!,
      ticks: readFileSync(path.join(dir, f.name), 'utf8')
        .split('\n')
        .filter((l) => l !== '')
        .map((l) => (JSON.parse(l) as { i: number }).i),
    }));
}

describe('LOG_FILE rotation', () => {
  const dirs: string[] = [];
  afterEach(() => {
    for (const dir of dirs.splice(0)) rmSync(dir, { recursive: true, force: true });
  });
  function tempDir(): string {
    const dir = mkdtempSync(path.join(os.tmpdir(), 'kiln-log-'));
    dirs.push(dir);
    return dir;
  }

  it('rolls by size and keeps at most LOG_KEEP files', async () => {
    const dir = tempDir();
    const config = { logLevel: 'info' as const, logFile: path.join(dir, 'logs', 'kiln.log'), logMaxSize: '1k', logKeep: 3 };
    const log = createLogger(config);
    await transportReady(path.join(dir, 'logs'));
    await writeLines(log, 300, 'first');
    await closeLogger(log);

    const files = rolledFiles(path.join(dir, 'logs'));
    expect(files.length).toBe(3);
    // Numbers well past 3: many rotations happened and the oldest files were removed.
    expect(files.at(-1)!.number).toBeGreaterThan(5);
    // Each kept file holds whole JSON lines; the newest lines survived.
    const lines = files.flatMap((f) =>
      readFileSync(path.join(dir, 'logs', f.name), 'utf8')
        .split('\n')
        .filter((l) => l !== ''),
    );
    const parsed = lines.map((l) => JSON.parse(l) as { i: number; msg: string; time: string; level: number });
    expect(parsed.some((p) => p.i === 299)).toBe(true);
    expect(parsed.every((p) => p.msg === 'line' && /Z$/.test(p.time))).toBe(true);
    // Operators follow current.log.
    expect(readdirSync(path.join(dir, 'logs'))).toContain('current.log');
  });

  it('after a restart still keeps at most LOG_KEEP files, old runs included', async () => {
    const dir = tempDir();
    const config = { logLevel: 'info' as const, logFile: path.join(dir, 'kiln.log'), logMaxSize: '1k', logKeep: 2 };
    const first = createLogger(config);
    await transportReady(dir);
    await writeLines(first, 100, 'first');
    await closeLogger(first);
    const second = createLogger(config);
    await writeLines(second, 100, 'second');
    // Old files go at the next rotation, which the worker runs when it gets to it.
    for (let waited = 0; rolledFiles(dir).length > 2 && waited < 10_000; waited += 20) {
      await new Promise((resolve) => setTimeout(resolve, 20));
    }
    await closeLogger(second);

    const files = rolledFiles(dir);
    expect(files.length).toBe(2);
    const text = files.map((f) => readFileSync(path.join(dir, f.name), 'utf8')).join('');
    expect(text).toContain('"tag":"second"');
  });

  it('rolls to a new file at midnight, and not at any other hour', async () => {
    const dir = tempDir();
    const clockFile = path.join(dir, 'clock.cjs');
    writeFileSync(clockFile, CLOCK_PRELOAD);
    const [beforeMidnight, beforeEleven] = [path.join(dir, 'midnight'), path.join(dir, 'eleven')];
    // Both log for 5 s from a clock 3 s before the hour (the last line past those 5 s): past midnight in one, past 23:00 in the other.
    await Promise.all([logAcross(beforeMidnight, clockFile, '23:59:57', 5000), logAcross(beforeEleven, clockFile, '22:59:57', 5000)]);

    const days = datedFiles(beforeMidnight);
    expect(days.map((f) => f.name)).toHaveLength(2);
    const [first, second] = days as [(typeof days)[0], (typeof days)[0]];
    // The day's file, then the next day's, numbered from 1 again.
    expect(Date.parse(`${second.date}T00:00:00Z`) - Date.parse(`${first.date}T00:00:00Z`)).toBe(24 * 3600_000);
    expect(second.name).toBe(`kiln.${second.date}.1.log`);
    // Each line in exactly one of them, none lost, the earlier ones in the earlier day.
    expect(first.ticks.length).toBeGreaterThan(0);
    expect(second.ticks.length).toBeGreaterThan(0);
    const all = [...first.ticks, ...second.ticks];
    expect(all).toEqual(all.map((_, i) => i));
    expect(readlinkSync(path.join(beforeMidnight, 'current.log'))).toBe(second.name);

    // 23:00 is not a new day: one file with every line, from the first (before 23:00) to the last (written
    // past the 5 s, so after 23:00 in the log thread's clock).
    const hours = datedFiles(beforeEleven);
    expect(hours.map((f) => f.name)).toEqual([`kiln.${hours[0]?.date}.1.log`]);
    expect(hours[0]!.ticks.length).toBeGreaterThanOrEqual(2);
    expect(hours[0]!.ticks).toEqual(hours[0]!.ticks.map((_, i) => i));
  });

  it('closing flushes every line written just before', async () => {
    const dir = tempDir();
    const log = createLogger({ logLevel: 'info', logFile: path.join(dir, 'kiln.log'), logMaxSize: '10m', logKeep: 7 });
    for (let i = 0; i < 50; i++) log.info({ i }, 'burst');
    await closeLogger(log);
    const files = rolledFiles(dir);
    expect(files.length).toBe(1);
    const lines = readFileSync(path.join(dir, files[0]!.name), 'utf8').trim().split('\n');
    expect(lines).toHaveLength(50);
  });
});
