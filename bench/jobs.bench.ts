/**
 * Job throughput and enqueue-to-start latency for a no-op job kind:
 * the local runner over SQLite (JOB_CONCURRENCY=2), and BullMQ with 2 worker
 * processes (needs TEST_REDIS_URL or REDIS_URL; rows in SQLite, and in
 * PostgreSQL too when TEST_DATABASE_URL is set). Latency is the row's
 * started_at − created_at. Figures, never pass/fail; noisy on a busy machine.
 *
 *   node --import tsx bench/jobs.bench.ts          (or via `npm run bench`)
 *   node --import tsx bench/jobs.bench.ts --worker (internal: one BullMQ worker process)
 *   BENCH_WORKER_CONCURRENCY=16 (jobs per worker process, default 4), BENCH_BULLMQ_ONLY=1
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { Redis } from 'ioredis';
import pino from 'pino';
import { systemClock } from '../src/clock.js';
import { migrateToLatest, openDatabase, type Db } from '../src/platform/db/index.js';
import { BullJobRunner, LocalJobRunner, type JobRunner } from '../src/platform/jobs/index.js';
import { createTestDatabase } from '../test/helpers/pg.js';

const SELF = fileURLToPath(import.meta.url);
const REDIS_URL = process.env.TEST_REDIS_URL ?? process.env.REDIS_URL;
const log = pino({ level: 'silent' });
const noop = async () => null;
/** Jobs each BullMQ worker process runs at once (JOB_CONCURRENCY of a `kiln worker`). */
const WORKER_CONCURRENCY = Number(process.env.BENCH_WORKER_CONCURRENCY ?? 4);

function percentile(sorted: number[], p: number): number {
  return sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))] ?? NaN;
}

async function latencies(db: Db, ids: string[]): Promise<{ p50: number; p99: number }> {
  const rows = await db.kysely.selectFrom('jobs').select(['created_at', 'started_at']).where('job_id', 'in', ids).execute();
  const ms = rows.map((r) => Date.parse(r.started_at ?? '') - Date.parse(r.created_at)).sort((a, b) => a - b);
  return { p50: percentile(ms, 50), p99: percentile(ms, 99) };
}

async function completed(db: Db): Promise<number> {
  const row = await db.kysely.selectFrom('jobs').select((eb) => eb.fn.countAll<number>().as('n')).where('status', '=', 'completed').executeTakeFirstOrThrow();
  return Number(row.n);
}

async function untilCompleted(db: Db, n: number): Promise<void> {
  while ((await completed(db)) < n) await new Promise((r) => setTimeout(r, 50));
}

/** One job at a time into an idle runner: how soon does it start? */
async function idleLatency(runner: JobRunner, db: Db, count: number): Promise<{ p50: number; p99: number }> {
  const ids: string[] = [];
  for (let i = 0; i < count; i++) {
    const job = await runner.enqueue('noop', null, { userId: null });
    await runner.waitFor(job.job_id, 10_000);
    ids.push(job.job_id);
  }
  return latencies(db, ids);
}

/** `count` jobs enqueued as fast as `parallel` producers can: jobs/s until the last completes. */
async function throughput(runner: JobRunner, db: Db, count: number, parallel: number): Promise<{ perSecond: number; p50: number; p99: number }> {
  const before = await completed(db);
  const ids: string[] = [];
  const started = performance.now();
  let next = 0;
  await Promise.all(
    Array.from({ length: parallel }, async () => {
      while (next < count) {
        next++;
        ids.push((await runner.enqueue('noop', null, { userId: null })).job_id);
      }
    }),
  );
  await untilCompleted(db, before + count);
  const seconds = (performance.now() - started) / 1000;
  return { perSecond: count / seconds, ...(await latencies(db, ids)) };
}

function tempDb(): { db: Db; dir: string; cleanup: () => void } {
  const dir = mkdtempSync(path.join(os.tmpdir(), 'kiln-bench-jobs-'));
  return { db: openDatabase(undefined, dir), dir, cleanup: () => rmSync(dir, { recursive: true, force: true }) };
}

async function benchLocal(): Promise<void> {
  const { db, cleanup } = tempDb();
  await migrateToLatest(db);
  const runner = new LocalJobRunner({ db, log, clock: systemClock }, { concurrency: 2 });
  runner.register('noop', noop);
  await runner.start();
  await idleLatency(runner, db, 20); // warm-up
  const idle = await idleLatency(runner, db, 300);
  const load = await throughput(runner, db, 3000, 8);
  await runner.stop();
  await db.close();
  cleanup();
  console.log(`local runner (SQLite, concurrency 2): idle enqueue-to-start p50 ${idle.p50} ms, p99 ${idle.p99} ms`);
  console.log(`local runner (SQLite, concurrency 2): ${load.perSecond.toFixed(0)} jobs/s for 3000 no-op jobs; start latency under load p50 ${load.p50} ms, p99 ${load.p99} ms`);
}

function startWorker(dir: string, databaseUrl: string | undefined, prefix: string): Promise<ChildProcess> {
  const child = spawn(process.execPath, ['--import', 'tsx', SELF, '--worker'], {
    env: { ...process.env, BENCH_DIR: dir, BENCH_DATABASE_URL: databaseUrl ?? '', BENCH_PREFIX: prefix, BENCH_REDIS_URL: REDIS_URL },
    stdio: ['ignore', 'pipe', 'inherit'],
  });
  return new Promise((resolve, reject) => {
    child.stdout?.on('data', (d: Buffer) => d.toString().includes('ready') && resolve(child));
    child.once('exit', (code) => reject(new Error(`bench worker exited with ${code}`)));
  });
}

/** BullMQ with 2 `kiln worker`-like processes; rows in SQLite, or PostgreSQL when TEST_DATABASE_URL is set. */
async function benchBullmq(rows: 'SQLite' | 'PostgreSQL'): Promise<void> {
  if (!REDIS_URL) {
    console.log('BullMQ: skipped (set TEST_REDIS_URL or REDIS_URL)');
    return;
  }
  const temp = tempDb();
  const pg = rows === 'PostgreSQL' ? await createTestDatabase() : null;
  const db = pg ? openDatabase(pg.url, temp.dir) : temp.db;
  await migrateToLatest(db);
  const prefix = `kiln-bench-${randomBytes(4).toString('hex')}`;
  const producer = new BullJobRunner({ db, log, clock: systemClock }, { redisUrl: REDIS_URL, role: 'serve', concurrency: 1, prefix });
  producer.register('noop', noop);
  const workers = await Promise.all([startWorker(temp.dir, pg?.url, prefix), startWorker(temp.dir, pg?.url, prefix)]);
  const label = `BullMQ (2 worker processes × concurrency ${WORKER_CONCURRENCY}, ${rows} rows)`;
  try {
    await idleLatency(producer, db, 20);
    const idle = await idleLatency(producer, db, 200);
    const load = await throughput(producer, db, 5000, 32);
    console.log(`${label}: idle enqueue-to-start p50 ${idle.p50} ms, p99 ${idle.p99} ms`);
    console.log(`${label}: ${load.perSecond.toFixed(0)} jobs/s for 5000 no-op jobs; start latency under load p50 ${load.p50} ms, p99 ${load.p99} ms`);
  } finally {
    await Promise.all(workers.map((w) => new Promise((r) => (w.once('exit', r), w.kill('SIGTERM')))));
    await producer.stop();
    const redis = new Redis(REDIS_URL);
    const keys = await redis.keys(`${prefix}:*`);
    if (keys.length) await redis.del(...keys);
    redis.disconnect();
    await db.close();
    if (pg) await temp.db.close();
    await pg?.drop();
    temp.cleanup();
  }
}

async function worker(): Promise<void> {
  const db = openDatabase(process.env.BENCH_DATABASE_URL || undefined, process.env.BENCH_DIR as string);
  const runner = new BullJobRunner({ db, log, clock: systemClock }, {
    redisUrl: process.env.BENCH_REDIS_URL as string,
    role: 'worker',
    concurrency: WORKER_CONCURRENCY,
    prefix: process.env.BENCH_PREFIX as string,
  });
  runner.register('noop', noop);
  await runner.start();
  process.once('SIGTERM', () => void runner.stop(1000).then(() => db.close()).then(() => process.exit(0)));
  process.stdout.write('ready\n');
}

export default async function bench(): Promise<void> {
  console.log('jobs: no-op job kind; figures are noisy (2 cores, shared machine)');
  if (!process.env.BENCH_BULLMQ_ONLY) await benchLocal();
  await benchBullmq('SQLite');
  if (process.env.TEST_DATABASE_URL) await benchBullmq('PostgreSQL');
}

if (process.argv[1] === SELF) {
  if (process.argv.includes('--worker')) await worker();
  else await bench();
}
