/**
 * Measuring helpers shared by benches: child processes with their peak RSS
 * (GNU time's %M, which covers every descendant the child waited for),
 * percentiles and plain-text tables. Benches print figures; they never fail on time.
 */
import { spawn } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';

export interface ChildResult {
  code: number;
  stdout: string;
  stderr: string;
  seconds: number;
  /** Peak resident set size in MB (the child and its descendants), null when GNU time is missing. */
  peakRssMb: number | null;
}

const GNU_TIME = '/usr/bin/time';
export const hasGnuTime = existsSync(GNU_TIME);
export const hasTaskset = existsSync('/usr/bin/taskset');

/** Runs `cmd args` and resolves with its output, wall time and peak RSS. `cpu` pins it to one core. */
export function runChild(cmd: string, args: string[], opts: { env?: NodeJS.ProcessEnv; cpu?: number } = {}): Promise<ChildResult> {
  const dir = mkdtempSync(path.join(os.tmpdir(), 'kiln-bench-'));
  const rssFile = path.join(dir, 'rss');
  let argv = [cmd, ...args];
  if (opts.cpu !== undefined && hasTaskset) argv = ['/usr/bin/taskset', '-c', String(opts.cpu), ...argv];
  if (hasGnuTime) argv = [GNU_TIME, '-f', '%M', '-o', rssFile, ...argv];
  const started = performance.now();
  return new Promise((resolve, reject) => {
    const child = spawn(argv[0] as string, argv.slice(1), { env: { ...process.env, ...opts.env }, stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (d: Buffer) => (stdout += d.toString()));
    child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
    child.on('error', reject);
    child.on('close', (code) => {
      const seconds = (performance.now() - started) / 1000;
      let peakRssMb: number | null = null;
      if (hasGnuTime && existsSync(rssFile)) {
        const kb = Number(readFileSync(rssFile, 'utf8').trim().split('\n').pop());
        if (Number.isFinite(kb)) peakRssMb = kb / 1024;
      }
      rmSync(dir, { recursive: true, force: true });
      resolve({ code: code ?? 1, stdout, stderr, seconds, peakRssMb });
    });
  });
}

export function percentile(values: readonly number[], p: number): number {
  if (values.length === 0) return Number.NaN;
  const sorted = [...values].sort((a, b) => a - b);
  const rank = Math.min(sorted.length - 1, Math.max(0, Math.ceil((p / 100) * sorted.length) - 1));
  return sorted[rank] as number;
}

export function table(header: string[], rows: Array<Array<string | number>>): string {
  const cells = [header, ...rows.map((r) => r.map(String))];
  const widths = header.map((_, i) => Math.max(...cells.map((r) => (r[i] ?? '').length)));
  const line = (r: string[]): string => '| ' + r.map((c, i) => c.padEnd(widths[i] as number)).join(' | ') + ' |';
  return [line(header), '|' + widths.map((w) => '-'.repeat(w + 2)).join('|') + '|', ...cells.slice(1).map(line)].join('\n');
}

export const fmt = (n: number | null, digits = 2): string => (n === null || Number.isNaN(n) ? 'n/a' : n.toFixed(digits));
