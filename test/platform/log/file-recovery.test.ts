/**
 * A log file that stops being writable while Kiln runs (pino-roll's worker
 * fails and exits, as on a full disk): stderr says so once, not once per
 * line, the lines go to stderr meanwhile, and once the file can be written
 * again a new transport writes to it, first a line saying what it missed.
 */
import { spawn } from 'node:child_process';
import { mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';

const LOG_THROUGH_FAILURE = path.join(import.meta.dirname, 'fixtures', 'log-through-failure.ts');

interface Line {
  msg?: string;
  phase?: string;
  i?: number;
  level?: number;
}

describe('a log file that cannot be written for a while', () => {
  const dirs: string[] = [];
  afterEach(() => {
    for (const dir of dirs.splice(0)) rmSync(dir, { recursive: true, force: true });
  });

  it('is reported once on stderr, its lines go to stderr, and the file is written again when it can be', async () => {
    const dir = mkdtempSync(path.join(os.tmpdir(), 'kiln-log-'));
    dirs.push(dir);
    const child = spawn(process.execPath, ['--import', 'tsx', LOG_THROUGH_FAILURE, path.join(dir, 'kiln.log')], {
      stdio: ['ignore', 'ignore', 'pipe'],
    });
    let stderr = '';
    child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
    const code = await new Promise<number | null>((resolve) => child.once('exit', resolve));
    expect(code, stderr).toBe(0);

    const stderrLines = stderr.split('\n').filter((l) => l !== '');
    const reports = stderrLines.filter((l) => l.startsWith('kiln: '));
    // One line when it failed and one when it was back, where there was one per log call.
    expect(reports, stderr).toHaveLength(2);
    expect(reports[0]).toMatch(/^kiln: log file error: EISDIR.*; its lines go to standard error until it can be written again \(next try in 1 s\)$/);
    expect(reports[1]).toMatch(/^kiln: log file written again after \d+ s; meanwhile \d+ lines went to standard error instead$/);
    const diverted = stderrLines.filter((l) => l.startsWith('{')).map((l) => JSON.parse(l) as Line);
    expect(diverted.filter((l) => l.phase === 'down').length).toBeGreaterThan(150);

    const text = readdirSync(dir)
      .filter((name) => /^kiln\.\d{4}-\d\d-\d\d\.\d+\.log$/.test(name))
      .sort((a, b) => Number(/(\d+)\.log$/.exec(a)![1]) - Number(/(\d+)\.log$/.exec(b)![1]))
      .map((name) => readFileSync(path.join(dir, name), 'utf8'))
      .join('');
    const lines = text.split('\n').filter((l) => l !== '').map((l) => JSON.parse(l) as Line);
    const gap = lines.findIndex((l) => l.msg?.startsWith('the log file could not be written for '));
    expect(gap, text).toBeGreaterThan(0);
    expect(lines[gap]!.level).toBe(40);
    expect(lines[gap]!.msg).toMatch(/\(EISDIR.*\); the lines logged meanwhile went to standard error$/);
    expect(lines.slice(gap + 1).some((l) => l.phase === 'up')).toBe(true);
    // Each line logged while it was down is in the file (before the failure) or on stderr, bar the few
    // handed to the worker as it failed.
    const seen = new Set([...lines, ...diverted].filter((l) => l.phase === 'down').map((l) => l.i));
    expect(seen.size).toBeGreaterThan(190);
  }, 40_000);
});
