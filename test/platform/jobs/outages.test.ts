// A job meeting an outage of what it stands on (docs/jobs.md): a database connection dropped mid-job or SQLite locked
// by another process is retried, not failed as a bug; a runner that cannot renew its lease gives the job up once the
// lease has run out, so a runner that can reach the database takes it over long before the job's timeout.
import SqliteDatabase from 'better-sqlite3';
import path from 'node:path';
import pg from 'pg';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { systemClock } from '../../../src/clock.js';
import { migrateToLatest, openDatabase, type Db } from '../../../src/platform/db/index.js';
import { abortWhy, BullJobRunner, LocalJobRunner, type AbortWhy, type JobRunner } from '../../../src/platform/jobs/index.js';
import { tempDataDir } from '../../helpers/config.js';
import { hasPostgres } from '../../helpers/pg.js';
import { tcpRelay, type TcpRelay } from '../../helpers/relay.js';
import { dropRedisPrefix, newPrefix, postgresStore, silentLog, TEST_REDIS_URL, whenAborted, type Store } from './harness.js';
import { until } from '../../helpers/until.js';

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

/** The hand-offs between a test and its job: the test says the row is locked, the job says its report has ended. */
interface ReportGate {
  rowLocked: Promise<void>;
  locked: () => void;
  firstReport: Promise<void>;
  reported: () => void;
}

function reportGate(): ReportGate {
  let [locked, reported] = [() => {}, () => {}];
  const rowLocked = new Promise<void>((r) => (locked = r));
  const firstReport = new Promise<void>((r) => (reported = r));
  return { rowLocked, locked: () => locked(), firstReport, reported: () => reported() };
}

/**
 * Holds the job's row locked (`SELECT … FOR UPDATE` in an open transaction), tells the handler (`locked`), waits
 * for its progress UPDATE to queue behind the lock, and terminates that backend: the connection drops while the job
 * writes. `reported`: the handler's report has ended.
 */
async function dropConnectionOfReport(store: Store, jobId: string, { locked, firstReport: reported }: Pick<ReportGate, 'locked' | 'firstReport'>): Promise<void> {
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
    const { rowLocked, locked, firstReport, reported } = reportGate();
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
    await dropConnectionOfReport(store, job_id, { locked, firstReport });
    expect(await jobs.waitFor(job_id, 10_000)).toMatchObject({ status: 'completed', attempts: 2, result: 'written on the second attempt', error: null });
    expect(seen).toEqual([{ code: 'service_unavailable', detail: 'A service the job needs (its database or storage) could not be reached.' }]);
  });

  it('fails as service_unavailable, not internal_error, once its attempts are spent', async () => {
    const store = await pgStore();
    const jobs = localRunner(store.db, 10_000);
    const { rowLocked, locked, firstReport, reported } = reportGate();
    jobs.register('writer', async (_input, job) => {
      await rowLocked;
      await job.report(0.5).finally(reported);
      return 'written';
    });
    await jobs.start();
    const { job_id } = await jobs.enqueue('writer', {}, { userId: 'u1', maxAttempts: 1 });
    await dropConnectionOfReport(store, job_id, { locked, firstReport });
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

/**
 * A runner whose database is reached through a relay that can hold what passes (a network that holds packets,
 * a pooler that hangs), no reset, beside a second runner that reaches the database directly.
 */
async function cutOffRunner<R extends JobRunner>(store: Store, make: (db: Db) => R): Promise<{ runner: R; relay: TcpRelay }> {
  const relay = await tcpRelay(new URL(store.databaseUrl as string), 5432);
  const db = openDatabase(relay.url, store.dataDir);
  const runner = make(db);
  // Undone in reverse: the relay lets what it held through first, so the runner's queries end and it can stop.
  cleanups.push(() => relay.close(), () => db.close(), () => runner.stop(500), () => relay.release());
  return { runner, relay };
}

describe.skipIf(!hasPostgres)(`a runner cut off from PostgreSQL mid-job${hasPostgres ? '' : ' (skipped: TEST_DATABASE_URL is not set)'}`, () => {
  it('local runner: gives the job up (signal aborted as lost) once its lease ran out unrenewed; another runner takes it over', async () => {
    const store = await pgStore();
    const leaseMs = 600;
    let why: AbortWhy | null = null;
    let abortedAt = 0;
    const { runner: cutOff, relay } = await cutOffRunner(store, (db) => localRunner(db, leaseMs));
    cutOff.register('long', async (_input, job) => {
      await whenAborted(job.signal);
      [why, abortedAt] = [abortWhy(job.signal), Date.now()];
      return 'never written';
    }, { timeoutMs: 60_000 });
    await cutOff.start();
    const { job_id } = await cutOff.enqueue('long', {}, { userId: 'u1' });
    await until(async () => (await store.db.kysely.selectFrom('jobs').select('status').where('job_id', '=', job_id).executeTakeFirst())?.status === 'processing');

    relay.hold();
    const cutAt = Date.now();
    const healthy = localRunner(store.db, leaseMs);
    healthy.register('long', async () => 'done by the runner that reaches the database', { timeoutMs: 60_000 });
    await healthy.start();
    expect(await healthy.waitFor(job_id, 10_000)).toMatchObject({ status: 'completed', attempts: 1, result: 'done by the runner that reaches the database' });
    await until(() => abortedAt > 0, 5000);
    expect(why).toBe('lost');
    // Within a lease and a heartbeat of the last renewal, which came at most a heartbeat before the cut.
    expect(abortedAt - cutAt).toBeLessThan(leaseMs + leaseMs / 3 + 1000);
  });

  describe.skipIf(!TEST_REDIS_URL)(`BullMQ${TEST_REDIS_URL ? '' : ' (skipped: TEST_REDIS_URL is not set)'}`, () => {
    let prefix: string;
    beforeEach(() => {
      prefix = newPrefix();
      cleanups.push(() => dropRedisPrefix(TEST_REDIS_URL as string, prefix));
    });

    /** A worker on the test's prefix, one job at a time, its BullMQ lock (and lease) 1 s. */
    const worker = (db: Db) => {
      const w = new BullJobRunner({ db, log: silentLog, clock: systemClock }, {
        redisUrl: TEST_REDIS_URL as string,
        role: 'worker',
        concurrency: 1,
        prefix,
        lockDurationMs: 1000,
        stalledIntervalMs: 500,
        reconcileMs: 60_000,
      });
      cleanups.push(() => w.stop(500));
      return w;
    };

    it('a worker that still reaches Redis hands the job back once its lease ran out, and a worker that reaches the database runs it', async () => {
      const store = await pgStore();
      const { runner: cutOff, relay } = await cutOffRunner(store, worker);
      const ran: string[] = [];
      cutOff.register('long', async (_input, job) => {
        ran.push('cut off');
        await whenAborted(job.signal);
        return 'never written';
      }, { timeoutMs: 60_000 });
      await cutOff.start();
      const { job_id } = await cutOff.enqueue('long', {}, { userId: 'u1' });
      await until(() => ran.length > 0);

      relay.hold();
      const healthy = worker(store.db);
      healthy.register('long', async () => {
        ran.push('healthy');
        return 'done by the worker that reaches the database';
      }, { timeoutMs: 60_000 });
      await healthy.start();
      // Far sooner than the job's 60 s timeout, which is when the cut-off worker would otherwise let go.
      expect(await healthy.waitFor(job_id, 15_000)).toMatchObject({ status: 'completed', attempts: 1, result: 'done by the worker that reaches the database' });
      expect(ran).toEqual(['cut off', 'healthy']);
      expect((await healthy.store.get(job_id))?.recoveries).toBe(1);
    });

    it('a worker whose database does not answer its claim lets the job go to a worker that reaches the database', async () => {
      const store = await pgStore();
      const { runner: cutOff, relay } = await cutOffRunner(store, worker);
      const ran: string[] = [];
      cutOff.register('quick', async () => {
        ran.push('cut off');
        return 'done by the cut-off worker';
      });
      await cutOff.start();
      relay.hold();
      // Enqueued by a process that reaches both; the cut-off worker is the only one taking jobs yet.
      const healthy = worker(store.db);
      healthy.register('quick', async () => {
        ran.push('healthy');
        return 'done by the worker that reaches the database';
      });
      const { job_id } = await healthy.enqueue('quick', {}, { userId: 'u1' });
      const { Queue } = await import('bullmq');
      const queue = new Queue('jobs', { connection: { url: TEST_REDIS_URL as string }, prefix });
      cleanups.push(() => queue.close());
      await until(async () => (await queue.getJobState(job_id)) === 'active');

      await healthy.start();
      expect(await healthy.waitFor(job_id, 10_000)).toMatchObject({ status: 'completed', attempts: 1, result: 'done by the worker that reaches the database' });
      expect(ran).toEqual(['healthy']);
    });

    it('a claim the database answers only after the worker gave up on it is given straight back, costing no attempt and no recovery', async () => {
      const store = await pgStore();
      const { runner: slow, relay } = await cutOffRunner(store, worker);
      slow.register('quick', async () => 'done once the database answers again');
      await slow.start();
      relay.hold();
      // Enqueues and reads only: never started, it takes no job.
      const enqueuer = worker(store.db);
      enqueuer.register('quick', async () => 'never run');
      const { job_id } = await enqueuer.enqueue('quick', {}, { userId: 'u1' });
      const { Queue } = await import('bullmq');
      const queue = new Queue('jobs', { connection: { url: TEST_REDIS_URL as string }, prefix });
      cleanups.push(() => queue.close());
      await until(async () => (await queue.getJobState(job_id)) === 'active');
      // Past the claim's bound (the 1 s lock): the worker has given up on it; then the held claim reaches the database.
      await new Promise((r) => setTimeout(r, 1500));
      relay.release();
      expect(await enqueuer.waitFor(job_id, 15_000)).toMatchObject({ status: 'completed', attempts: 1, result: 'done once the database answers again' });
      // Left leased to a run that never started, the row would have been taken over as a recovery.
      expect((await enqueuer.store.get(job_id))?.recoveries).toBe(0);
    });
  });
});
