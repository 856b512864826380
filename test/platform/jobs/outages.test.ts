// A job meeting an outage of what it stands on (docs/jobs.md): a database connection dropped mid-job or SQLite locked
// by another process is retried, not failed as a bug.
import SqliteDatabase from 'better-sqlite3';
import path from 'node:path';
import pg from 'pg';
import { afterEach, describe, expect, it } from 'vitest';
import { systemClock } from '../../../src/clock.js';
import { migrateToLatest, openDatabase, type Db } from '../../../src/platform/db/index.js';
import { LocalJobRunner } from '../../../src/platform/jobs/index.js';
import { tempDataDir } from '../../helpers/config.js';
import { hasPostgres } from '../../helpers/pg.js';
import { postgresStore, silentLog, type Store } from './harness.js';

async function until<T>(check: () => Promise<T | undefined | false> | T | undefined | false, timeoutMs = 5000): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const v = await check();
    if (v) return v;
    if (Date.now() > deadline) throw new Error('condition not met in time');
    await new Promise((r) => setTimeout(r, 20));
  }
}

const cleanups: Array<() => Promise<unknown> | unknown> = [];
afterEach(async () => {
  for (const c of cleanups.splice(0).reverse()) await c();
});

function localRunner(db: Db, leaseMs = 800): LocalJobRunner {
  const r = new LocalJobRunner({ db, log: silentLog, clock: systemClock }, { concurrency: 2, leaseMs, pollMs: 20 });
  cleanups.push(() => r.stop(500));
  return r;
}

async function pgStore(): Promise<Store> {
  const store = await postgresStore();
  cleanups.push(() => store.close());
  return store;
}

/** A session of its own on the test database (a psql, as the audit used), closed after the test. */
async function session(url: string): Promise<pg.Client> {
  const client = new pg.Client({ connectionString: url });
  client.on('error', () => undefined);
  await client.connect();
  cleanups.push(() => client.end().catch(() => undefined));
  return client;
}

/**
 * Holds the job's row locked (`SELECT … FOR UPDATE` in an open transaction), tells the handler (`locked`), waits
 * for its progress UPDATE to queue behind the lock, and terminates that backend: the connection drops while the job
 * writes. `reported`: the handler's report has ended.
 */
async function dropConnectionOfReport(store: Store, jobId: string, locked: () => void, reported: Promise<void>): Promise<void> {
  const url = store.databaseUrl as string;
  const locker = await session(url);
  const admin = await session(url);
  await locker.query('begin');
  await locker.query('select 1 from jobs where job_id = $1 for update', [jobId]);
  locked();
  const waiting = await until(async () => {
    const { rows } = await admin.query<{ pid: number }>(
      `select pid from pg_stat_activity where datname = current_database() and wait_event_type = 'Lock' and query ilike 'update "jobs" set "progress"%'`,
    );
    return rows[0];
  });
  await admin.query('select pg_terminate_backend($1)', [waiting.pid]);
  await reported;
  await locker.query('rollback');
}

describe.skipIf(!hasPostgres)(`a PostgreSQL connection dropped mid-job${hasPostgres ? '' : ' (skipped: TEST_DATABASE_URL is not set)'}`, () => {
  it('is retried with the backoff (service_unavailable while it waits), and the next attempt completes', async () => {
    const store = await pgStore();
    const jobs = localRunner(store.db, 10_000);
    let [locked, reported] = [() => {}, () => {}];
    const rowLocked = new Promise<void>((r) => (locked = r));
    const firstReport = new Promise<void>((r) => (reported = r));
    const seen: unknown[] = [];
    jobs.register('writer', async (_input, job) => {
      if (job.attempt === 1) {
        await rowLocked;
        try {
          await job.report(0.5, { stage: 'writing' });
        } finally {
          reported();
        }
        return 'written on the first attempt';
      }
      // The retry's row: the first attempt's error stays visible until this one ends.
      seen.push((await jobs.get(job.jobId))?.error);
      return 'written on the second attempt';
    }, { backoff: { delayMs: 50 } });
    await jobs.start();
    const { job_id } = await jobs.enqueue('writer', {}, { userId: 'u1' });
    await dropConnectionOfReport(store, job_id, locked, firstReport);
    expect(await jobs.waitFor(job_id, 10_000)).toMatchObject({ status: 'completed', attempts: 2, result: 'written on the second attempt', error: null });
    expect(seen).toEqual([{ code: 'service_unavailable', detail: 'A service the job needs (its database or storage) could not be reached.' }]);
  });

  it('fails as service_unavailable, not internal_error, once its attempts are spent', async () => {
    const store = await pgStore();
    const jobs = localRunner(store.db, 10_000);
    let [locked, reported] = [() => {}, () => {}];
    const rowLocked = new Promise<void>((r) => (locked = r));
    const firstReport = new Promise<void>((r) => (reported = r));
    jobs.register('writer', async (_input, job) => {
      await rowLocked;
      await job.report(0.5).finally(reported);
      return 'written';
    });
    await jobs.start();
    const { job_id } = await jobs.enqueue('writer', {}, { userId: 'u1', maxAttempts: 1 });
    await dropConnectionOfReport(store, job_id, locked, firstReport);
    expect(await jobs.waitFor(job_id, 10_000)).toMatchObject({ status: 'failed', attempts: 1, error: { code: 'service_unavailable' } });
  });
});

describe('SQLite locked by another process for longer than a write waits (database_busy)', () => {
  it('is retried, and the next attempt completes', async () => {
    const temp = tempDataDir();
    cleanups.push(() => temp.cleanup());
    // A short wait for the lock, so the write gives up in a moment rather than after 10 s.
    const db = openDatabase(undefined, temp.dir, { busyWaitMs: 200 });
    cleanups.push(() => db.close());
    await migrateToLatest(db);
    const jobs = localRunner(db);
    const other = new SqliteDatabase(path.join(temp.dir, 'kiln.db'));
    cleanups.push(() => other.close());
    let failedWrite: unknown;
    jobs.register('writer', async (_input, job) => {
      if (job.attempt === 1) {
        other.exec('begin immediate'); // another process takes the write lock and keeps it
        failedWrite = await job.report(0.5).then(() => 'written', (err: unknown) => err);
        other.exec('rollback');
        throw failedWrite;
      }
      return 'written on the second attempt';
    }, { backoff: { delayMs: 20 } });
    await jobs.start();
    const { job_id } = await jobs.enqueue('writer', {}, { userId: 'u1' });
    expect(await jobs.waitFor(job_id, 10_000)).toMatchObject({ status: 'completed', attempts: 2, result: 'written on the second attempt' });
    expect(failedWrite).toMatchObject({ code: 'database_busy' });
  });
});
