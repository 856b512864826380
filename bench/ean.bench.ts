/**
 * `ean_fetch` jobs end to end against a fake product database on 127.0.0.1
 * (Open Food Facts' JSON and a 640x427 JPEG, 110 kB): provider call, guarded
 * download, staging, three variants, blobs and row. Figures: jobs/s, and
 * enqueue-to-complete latency (the row's finished_at − created_at) one job
 * at a time and under load. Also jobs for barcodes already stored (no
 * provider call). Local runner over SQLite at JOB_CONCURRENCY 2 (the
 * default) and 4; BullMQ with 2 worker processes (JOB_CONCURRENCY 2 each)
 * when TEST_REDIS_URL or REDIS_URL is set. Never pass/fail.
 *
 *   node --import tsx bench/ean.bench.ts          (or `npm run bench ean`)
 *   node --import tsx bench/ean.bench.ts --worker (internal: one BullMQ worker process)
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { Redis } from 'ioredis';
import { loadConfig, type Env } from '../src/config.js';
import { createContext, type Context } from '../src/context.js';
import { registerProductImageJobs } from '../src/modules/product-images/fetch-job.js';
import { EAN_FETCH, type EanFetchInput } from '../src/modules/product-images/service.js';
import { BullJobRunner, type JobRunner } from '../src/platform/jobs/index.js';
import { startFakeProvider, type FakeProvider } from '../test/modules/product-images/fake-provider.js';
import { ean13 } from '../test/modules/product-images/server.js';
import { fmt, percentile, table } from './lib/measure.js';
import { machineLine } from './lib/report.js';

const SELF = fileURLToPath(import.meta.url);
const REDIS_URL = process.env.TEST_REDIS_URL ?? process.env.REDIS_URL;

function benchEnv(dataDir: string, providerUrl: string, concurrency: number): Env {
  return { DATA_DIR: dataDir, LOG_LEVEL: 'silent', EAN_PROVIDER_URL: providerUrl, FETCH_ALLOWED_HOSTS: '127.0.0.1', JOB_CONCURRENCY: String(concurrency) };
}

/** A Context whose job runner is `runner` (BullMQ with a prefix of its own) instead of the configured one. */
async function contextWith(env: Env, runner?: (ctx: Context) => JobRunner): Promise<Context> {
  const base = await createContext(loadConfig(env, env.DATA_DIR));
  if (!runner) return base;
  const jobs = runner(base);
  base.onClose(() => jobs.stop(1000));
  return { ...base, jobs };
}

interface Figures {
  perSecond: number;
  p50: number;
  p99: number;
  failed: number;
}

async function finished(ctx: Context, ids: string[]): Promise<Figures & { done: number }> {
  const rows = await ctx.db.kysely.selectFrom('jobs').select(['status', 'created_at', 'finished_at']).where('job_id', 'in', ids).execute();
  const done = rows.filter((r) => r.finished_at !== null);
  const ms = done.map((r) => Date.parse(r.finished_at as string) - Date.parse(r.created_at)).sort((a, b) => a - b);
  const first = Math.min(...rows.map((r) => Date.parse(r.created_at)));
  const last = Math.max(...done.map((r) => Date.parse(r.finished_at as string)));
  return { done: done.length, perSecond: (done.length * 1000) / Math.max(1, last - first), p50: percentile(ms, 50), p99: percentile(ms, 99), failed: rows.filter((r) => r.status === 'failed').length };
}

async function runBatch(ctx: Context, codes: string[], users: string[]): Promise<Figures> {
  const ids: string[] = [];
  for (const [i, code] of codes.entries()) {
    const userId = users[i % users.length] as string;
    const input: EanFetchInput = { ean_code: code, description: null };
    ids.push((await ctx.jobs.enqueue(EAN_FETCH, input, { userId, dedupeKey: `${EAN_FETCH}:${userId}:${code}` })).job_id);
  }
  for (;;) {
    const f = await finished(ctx, ids);
    if (f.done === ids.length) return f;
    await new Promise((r) => setTimeout(r, 20));
  }
}

async function oneAtATime(ctx: Context, codes: string[]): Promise<Figures> {
  const all: Figures[] = [];
  for (const code of codes) all.push(await runBatch(ctx, [code], ['bench']));
  const ms = all.map((f) => f.p50).sort((a, b) => a - b);
  return { perSecond: NaN, p50: percentile(ms, 50), p99: percentile(ms, 99), failed: all.reduce((n, f) => n + f.failed, 0) };
}

let nextCode = 1;
function newCodes(provider: FakeProvider, n: number): string[] {
  return Array.from({ length: n }, () => {
    const code = ean13(nextCode++, '2');
    provider.products.set(code, { kind: 'ok', name: `Product ${code}`, image: '/img/rocket.jpg' });
    return code;
  });
}

const rows: Array<Array<string | number>> = [];
function record(setup: string, what: string, n: number, f: Figures): void {
  rows.push([setup, what, n, Number.isNaN(f.perSecond) ? '-' : fmt(f.perSecond, 1), fmt(f.p50, 0), fmt(f.p99, 0), f.failed]);
}

async function measure(ctx: Context, provider: FakeProvider, setup: string, load: number): Promise<void> {
  await runBatch(ctx, newCodes(provider, 4), ['warm']); // libvips and the connection paths warmed outside the figures
  const hitsBefore = [...provider.hits.entries()].filter(([p]) => p.startsWith('/api/')).reduce((n, [, c]) => n + c, 0);
  record(setup, 'one at a time, new barcodes', 30, await oneAtATime(ctx, newCodes(provider, 30)));
  const fresh = newCodes(provider, load);
  record(setup, `${load} at once, new barcodes`, load, await runBatch(ctx, fresh, ['u1', 'u2', 'u3', 'u4']));
  // Later users asking for the same barcodes: completed from the store, no provider call.
  record(setup, `${load} at once, already stored`, load, await runBatch(ctx, fresh, ['v1', 'v2', 'v3', 'v4']));
  const hits = [...provider.hits.entries()].filter(([p]) => p.startsWith('/api/')).reduce((n, [, c]) => n + c, 0) - hitsBefore;
  if (hits !== 30 + load) console.log(`  note: ${setup}: the provider was asked ${hits} times for ${30 + load} new barcodes`);
}

async function benchLocal(provider: FakeProvider, concurrency: number): Promise<void> {
  const dir = mkdtempSync(path.join(os.tmpdir(), 'kiln-bench-ean-'));
  const ctx = await contextWith(benchEnv(dir, provider.url, concurrency));
  try {
    registerProductImageJobs(ctx);
    await ctx.jobs.start();
    await measure(ctx, provider, `local runner, SQLite, JOB_CONCURRENCY=${concurrency}`, 200);
  } finally {
    await ctx.close();
    rmSync(dir, { recursive: true, force: true });
  }
}

function startWorker(dir: string, providerUrl: string, prefix: string): Promise<ChildProcess> {
  const child = spawn(process.execPath, ['--import', 'tsx', SELF, '--worker'], {
    env: { ...process.env, BENCH_DIR: dir, BENCH_PROVIDER: providerUrl, BENCH_PREFIX: prefix, BENCH_REDIS_URL: REDIS_URL },
    stdio: ['ignore', 'pipe', 'inherit'],
  });
  return new Promise((resolve, reject) => {
    child.stdout?.on('data', (d: Buffer) => d.toString().includes('ready') && resolve(child));
    child.once('exit', (code) => reject(new Error(`bench worker exited with ${code}`)));
  });
}

function bullRunner(role: 'serve' | 'worker', prefix: string, concurrency: number) {
  return (ctx: Context) => new BullJobRunner({ db: ctx.db, log: ctx.log, clock: ctx.clock }, { redisUrl: REDIS_URL as string, role, concurrency, prefix });
}

async function benchBullmq(provider: FakeProvider): Promise<void> {
  if (!REDIS_URL) {
    console.log('BullMQ: skipped (set TEST_REDIS_URL or REDIS_URL)');
    return;
  }
  const dir = mkdtempSync(path.join(os.tmpdir(), 'kiln-bench-ean-'));
  const prefix = `kiln-bench-${randomBytes(4).toString('hex')}`;
  const ctx = await contextWith(benchEnv(dir, provider.url, 2), bullRunner('serve', prefix, 2));
  registerProductImageJobs(ctx);
  const workers = await Promise.all([startWorker(dir, provider.url, prefix), startWorker(dir, provider.url, prefix)]);
  try {
    await measure(ctx, provider, 'BullMQ, 2 worker processes × JOB_CONCURRENCY=2, SQLite', 200);
  } finally {
    await Promise.all(workers.map((w) => new Promise((r) => (w.once('exit', r), w.kill('SIGTERM')))));
    await ctx.close();
    const redis = new Redis(REDIS_URL);
    const keys = await redis.keys(`${prefix}:*`);
    if (keys.length) await redis.del(...keys);
    redis.disconnect();
    rmSync(dir, { recursive: true, force: true });
  }
}

/** What `kiln worker` does, with the bench's own Redis prefix. */
async function worker(): Promise<void> {
  const env = benchEnv(process.env.BENCH_DIR as string, process.env.BENCH_PROVIDER as string, 2);
  const ctx = await contextWith(env, bullRunner('worker', process.env.BENCH_PREFIX as string, 2));
  registerProductImageJobs(ctx);
  await ctx.jobs.start();
  process.once('SIGTERM', () => void ctx.close().then(() => process.exit(0)));
  process.stdout.write('ready\n');
}

async function bench(): Promise<void> {
  console.log(`ean_fetch: fake provider on 127.0.0.1, 640x427 JPEG, 3 variants per fetch\n${machineLine()}`);
  const provider = await startFakeProvider();
  try {
    await benchLocal(provider, 2);
    await benchLocal(provider, 4);
    await benchBullmq(provider);
  } finally {
    await provider.close();
  }
  console.log(table(['setup', 'jobs', 'n', 'jobs/s', 'p50 ms', 'p99 ms', 'failed'], rows));
}

if (process.argv[1] === SELF) {
  if (process.argv.includes('--worker')) await worker();
  else await bench();
}
