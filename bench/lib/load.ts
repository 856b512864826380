/**
 * Load generators for HTTP benches: autocannon (a devDependency, run in the
 * bench process, never in the server's) and wrk (a C tool, used only when it
 * is installed, as a cross-check that the Node client is not the limit).
 * Both are bounded in time and stop by themselves.
 */
import { spawn } from 'node:child_process';
import { existsSync } from 'node:fs';
import { createRequire } from 'node:module';

export interface LoadResult {
  tool: 'autocannon' | 'wrk';
  /** Requests per second over the whole run. */
  rps: number;
  p50Ms: number;
  p99Ms: number;
  total: number;
  /** Responses per status code. */
  statuses: Record<string, number>;
  errors: number;
}

export interface CannonResult {
  requests: { average: number; total: number };
  latency: { p50: number; p99: number };
  duration: number;
  errors: number;
  timeouts: number;
  statusCodeStats?: Record<string, { count: number | string }>;
}
/** One request of a sequence each connection sends in turn. */
export interface CannonRequest {
  method?: string;
  path?: string;
  headers?: Record<string, string>;
  body?: string;
}
export interface CannonOptions {
  url: string;
  connections: number;
  duration?: number;
  amount?: number;
  method?: string;
  headers?: Record<string, string>;
  body?: string;
  requests?: CannonRequest[];
}
// autocannon ships no types; this is the part of its API used here.
export const autocannon = createRequire(import.meta.url)('autocannon') as (opts: CannonOptions) => Promise<CannonResult>;

/** Answers per status code of a run. */
export function statusesOf(r: Pick<CannonResult, 'statusCodeStats'>): Record<string, number> {
  return Object.fromEntries(Object.entries(r.statusCodeStats ?? {}).map(([code, s]) => [code, Number(s.count)]));
}

export interface LoadOptions {
  url: string;
  connections: number;
  seconds: number;
  /** autocannon only: exactly this many requests, then stop (`seconds` is then ignored). */
  requests?: number;
  headers?: Record<string, string>;
}

export async function runAutocannon(opts: LoadOptions): Promise<LoadResult> {
  const r = await autocannon({ url: opts.url, connections: opts.connections, duration: opts.seconds, amount: opts.requests, headers: opts.headers ?? {} });
  const statuses = statusesOf(r);
  return {
    tool: 'autocannon',
    rps: r.requests.total / r.duration,
    p50Ms: r.latency.p50,
    p99Ms: r.latency.p99,
    total: r.requests.total,
    statuses,
    errors: r.errors + r.timeouts,
  };
}

const WRK = ['/usr/bin/wrk', '/usr/local/bin/wrk'].find((p) => existsSync(p)) ?? null;
export const hasWrk = WRK !== null;

/** `wrk -t1 -c<connections> -d<seconds>s --latency`; one thread, so it takes one core as autocannon does. */
export function runWrk(opts: LoadOptions): Promise<LoadResult> {
  if (!WRK) throw new Error('wrk is not installed');
  const args = ['-t1', `-c${opts.connections}`, `-d${opts.seconds}s`, '--latency'];
  for (const [k, v] of Object.entries(opts.headers ?? {})) args.push('-H', `${k}: ${v}`);
  args.push(opts.url);
  return new Promise((resolve, reject) => {
    const child = spawn(WRK, args, { stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    child.stdout.on('data', (d: Buffer) => (out += d.toString()));
    child.stderr.on('data', (d: Buffer) => (out += d.toString()));
    child.on('error', reject);
    child.on('close', (code) => {
      if (code !== 0) return reject(new Error(`wrk exited with ${code}: ${out}`));
      const ms = (s: string | undefined): number => {
        const m = /^([\d.]+)(us|ms|s)$/.exec(s ?? '');
        if (!m) return Number.NaN;
        return Number(m[1]) * (m[2] === 'us' ? 0.001 : m[2] === 's' ? 1000 : 1);
      };
      const total = Number(/(\d+) requests in/.exec(out)?.[1] ?? Number.NaN);
      const non2xx = Number(/Non-2xx or 3xx responses: (\d+)/.exec(out)?.[1] ?? 0);
      const socketErrors = /Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)/.exec(out);
      resolve({
        tool: 'wrk',
        rps: Number(/Requests\/sec:\s+([\d.]+)/.exec(out)?.[1] ?? Number.NaN),
        p50Ms: ms(/^\s+50%\s+(\S+)/m.exec(out)?.[1]),
        p99Ms: ms(/^\s+99%\s+(\S+)/m.exec(out)?.[1]),
        total,
        // wrk counts only "not 2xx or 3xx"; the rest are reported together.
        statuses: { '2xx/3xx': total - non2xx, other: non2xx },
        errors: socketErrors ? socketErrors.slice(1).reduce((a, n) => a + Number(n), 0) : 0,
      });
    });
  });
}
