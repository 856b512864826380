import { existsSync, lstatSync, mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs';
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
