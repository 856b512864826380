/**
 * The environments the job suite runs in: the local runner over SQLite and
 * PostgreSQL, and BullMQ over Redis (a prefix of its own per run, removed after).
 */
import pino, { type Logger } from 'pino';
import { systemClock } from '../../../src/clock.js';
import { migrateToLatest, openDatabase, type Db } from '../../../src/platform/db/index.js';
import { BullJobRunner, LocalJobRunner, type JobContext } from '../../../src/platform/jobs/index.js';
import { tempDataDir } from '../../helpers/config.js';
import { createTestDatabase, hasPostgres } from '../../helpers/pg.js';

export const TEST_REDIS_URL = process.env.TEST_REDIS_URL;
export const silentLog = pino({ level: 'silent' });

/** Short enough that a dead runner's job is taken over within a second or two. */
export const TEST_LEASE_MS = 800;

/**
 * Resolves once `signal` aborts, at once if it already has: a handler can start with its signal aborted (a cancel or
 * a lost lease that came between the claim and the call), and an 'abort' listener added then never fires.
 */
export function whenAborted(signal: AbortSignal): Promise<void> {
  return signal.aborted ? Promise.resolve() : new Promise((resolve) => signal.addEventListener('abort', () => resolve(), { once: true }));
}

export interface Store {
  db: Db;
  /** What a child process passes to openDatabase. */
  databaseUrl: string | undefined;
  dataDir: string;
  close(): Promise<void>;
}

export async function sqliteStore(): Promise<Store> {
  const temp = tempDataDir();
  const db = openDatabase(undefined, temp.dir);
  await migrateToLatest(db);
  return { db, databaseUrl: undefined, dataDir: temp.dir, close: async () => (await db.close(), temp.cleanup()) };
}

export async function postgresStore(): Promise<Store> {
  const temp = tempDataDir();
  const pg = await createTestDatabase();
  const db = openDatabase(pg.url, temp.dir);
  await migrateToLatest(db);
  return {
    db,
    databaseUrl: pg.url,
    dataDir: temp.dir,
    close: async () => {
      await db.close();
      await pg.drop();
      temp.cleanup();
    },
  };
}

export { dropRedisPrefix, newPrefix } from '../../helpers/redis.js';

export type RunnerKind = 'local' | 'bullmq';

export interface Env {
  name: string;
  skip: string | false;
  runnerKind: RunnerKind;
  openStore(): Promise<Store>;
}

export const ENVS: Env[] = [
  { name: 'local runner, SQLite', skip: false, runnerKind: 'local', openStore: sqliteStore },
  {
    name: 'local runner, PostgreSQL',
    skip: hasPostgres ? false : 'TEST_DATABASE_URL is not set',
    runnerKind: 'local',
    openStore: postgresStore,
  },
  {
    name: 'BullMQ runner, Redis + SQLite',
    skip: TEST_REDIS_URL ? false : 'TEST_REDIS_URL is not set',
    runnerKind: 'bullmq',
    openStore: sqliteStore,
  },
];

export function makeRunner(kind: RunnerKind, db: Db, prefix: string, concurrency = 2): LocalJobRunner | BullJobRunner {
  const deps = { db, log: silentLog, clock: systemClock };
  if (kind === 'local') return new LocalJobRunner(deps, { concurrency, leaseMs: TEST_LEASE_MS, pollMs: 20 });
  return new BullJobRunner(deps, {
    redisUrl: TEST_REDIS_URL as string,
    role: 'worker',
    concurrency,
    prefix,
    lockDurationMs: 1000,
    stalledIntervalMs: 500,
    reconcileMs: 2000,
  });
}

/** A first attempt of `maxAttempts`, run by hand beside the runner, whose progress reports all fail with `reportError`. */
export function firstAttempt(type: string, maxAttempts: number, log: Logger, reportError: unknown): JobContext {
  return {
    jobId: 'outage-attempt',
    type,
    userId: null,
    createdAt: new Date().toISOString(),
    attempt: 1,
    maxAttempts,
    signal: new AbortController().signal,
    log,
    report: () => Promise.reject(reportError),
  };
}
