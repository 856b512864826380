/**
 * The database: Kysely over SQLite (better-sqlite3, WAL) by default or
 * PostgreSQL (pg) when DATABASE_URL says so, and the migrations both share.
 *
 * SQLite transactions start with BEGIN IMMEDIATE, so a read-modify-write
 * (the gallery's primary image) holds the write lock from its first read and
 * two processes on one file serialise instead of failing with SQLITE_BUSY.
 * On PostgreSQL the same code takes row locks with `lockForUpdate`.
 *
 * better-sqlite3 runs on the event loop's thread, so SQLite's own wait for a
 * lock (busy_timeout) stops every request of the process while it lasts. It
 * is kept short; a write still refused is tried again after a pause on a
 * timer (waitingForLocks), up to BUSY_WAIT_MS in all, then fails as 503
 * `database_busy`.
 */
import path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import SqliteDatabase from 'better-sqlite3';
import {
  CompiledQuery,
  Kysely,
  Migrator,
  PostgresDialect,
  SqliteAdapter,
  SqliteDialect,
  type DatabaseConnection,
  type SqliteDialectConfig,
  type SqliteDatabase as KyselySqliteDatabase,
  type Driver,
  type MigrationProvider,
  type PostgresPool,
  type SelectQueryBuilder,
} from 'kysely';
import { DatabaseBusy } from '../../errors.js';
import { makeDirectorySync } from '../files.js';
import { DatabaseUnreachable } from './failures.js';
import { migrations } from './migrations/index.js';
import type { Database } from './schema.js';

export type DialectName = 'sqlite' | 'postgres';

export interface Db {
  kysely: Kysely<Database>;
  dialect: DialectName;
  /** A cheap round trip, for /health. */
  ping(): Promise<void>;
  close(): Promise<void>;
}

/**
 * SQLite's DDL is transactional, though Kysely's adapter says otherwise to be
 * safe: saying so makes the Migrator apply each migration inside a
 * transaction, so a `kiln migrate` (or a start) killed halfway leaves no
 * migration with half its tables and no record of it.
 */
class TransactionalDdlSqliteAdapter extends SqliteAdapter {
  override get supportsTransactionalDdl(): boolean {
    return true;
  }
}

/** How long SQLite itself waits for a lock, blocking the thread (busy_timeout). */
const BUSY_TIMEOUT_MS = 20;
/** How long a statement waits in all for another process's lock before it fails as `database_busy`. */
export const BUSY_WAIT_MS = 10_000;

/**
 * SQLITE_BUSY after busy_timeout: another connection holds the lock. The
 * statement did nothing (a BEGIN IMMEDIATE, a write outside a transaction, a
 * COMMIT, which SQLite leaves open to be tried again), so it is run again
 * after a pause that grows to 100 ms, with jitter so that two waiting
 * processes do not knock in step. SQLITE_BUSY_SNAPSHOT is not waited on:
 * waiting cannot help it, and BEGIN IMMEDIATE keeps it from happening.
 */
function waitingForLocks(connection: DatabaseConnection, busyWaitMs: number): DatabaseConnection {
  return {
    async executeQuery(query) {
      const started = Date.now();
      for (let attempt = 0; ; attempt++) {
        try {
          return await connection.executeQuery(query);
        } catch (err) {
          const code = (err as { code?: unknown }).code;
          if (code !== 'SQLITE_BUSY' && code !== 'SQLITE_BUSY_RECOVERY') throw err;
          const waited = Date.now() - started;
          if (waited >= busyWaitMs) throw new DatabaseBusy(waited, { cause: err });
          await sleep(Math.min(5 * 2 ** attempt, 100) * (0.5 + Math.random()));
        }
      }
    },
    streamQuery: (query, chunkSize) => connection.streamQuery(query, chunkSize),
  };
}

class ImmediateSqliteDialect extends SqliteDialect {
  constructor(
    config: SqliteDialectConfig,
    private readonly raw: SqliteDatabase.Database,
    private readonly busyWaitMs: number,
  ) {
    super(config);
  }

  override createAdapter(): SqliteAdapter {
    return new TransactionalDdlSqliteAdapter();
  }

  override createDriver(): Driver {
    const driver = super.createDriver();
    const acquire = driver.acquireConnection.bind(driver);
    // The driver has one connection; it is handed out wrapped, the same wrapper each time.
    const wrapped = new WeakMap<DatabaseConnection, DatabaseConnection>();
    driver.acquireConnection = async () => {
      const connection = await acquire();
      let waiting = wrapped.get(connection);
      if (!waiting) wrapped.set(connection, (waiting = waitingForLocks(connection, this.busyWaitMs)));
      return waiting;
    };
    const rollback = driver.rollbackTransaction.bind(driver);
    driver.beginTransaction = async (connection: DatabaseConnection) => {
      await connection.executeQuery(CompiledQuery.raw('begin immediate'));
    };
    // SQLite rolls a transaction back by itself on some failures (a full disk: SQLITE_FULL). A ROLLBACK then
    // fails with "no transaction is active", and that error would replace the one that says what happened.
    driver.rollbackTransaction = async (connection: DatabaseConnection) => {
      if (this.raw.inTransaction) await rollback(connection);
    };
    return driver;
  }
}

/** Prepared statements kept per database: every query the code writes, with room to spare. */
const STATEMENT_CACHE = 256;

/**
 * better-sqlite3 for Kysely, with prepared statements reused. Kysely's
 * SQLite driver prepares every query anew, and preparing costs about as much
 * as running a small query (a CPU profile of 4 MP uploads: 0.21 ms of each
 * upload's 0.45 ms in SQLite). Statements are kept by their SQL text, least
 * recently used dropped past STATEMENT_CACHE. A statement still busy in an
 * unfinished `iterate()` (a streamed query) is not handed out again: that
 * caller gets a fresh one. SQLite re-prepares a kept statement by itself when
 * a migration changes the schema under it.
 */
export function reusingStatements(database: SqliteDatabase.Database, max = STATEMENT_CACHE): KyselySqliteDatabase {
  const kept = new Map<string, SqliteDatabase.Statement>();
  return {
    close: () => database.close(),
    prepare(sql: string) {
      const hit = kept.get(sql);
      if (hit && !hit.busy) {
        kept.delete(sql); // most recently used last
        kept.set(sql, hit);
        return hit;
      }
      const statement = database.prepare(sql);
      if (!hit) {
        kept.set(sql, statement);
        if (kept.size > max) kept.delete(kept.keys().next().value as string);
      }
      return statement;
    },
  };
}

/** `durable`: each commit waits for the disk (synchronous = FULL); otherwise only checkpoints do (NORMAL, WAL's usual setting). */
function openSqlite(file: string, durable: boolean, busyWaitMs: number): Kysely<Database> {
  if (file !== ':memory:') makeDirectorySync(path.dirname(file));
  const database = new SqliteDatabase(file);
  database.pragma('journal_mode = WAL');
  database.pragma(`busy_timeout = ${BUSY_TIMEOUT_MS}`);
  database.pragma(durable ? 'synchronous = FULL' : 'synchronous = NORMAL');
  database.pragma('foreign_keys = ON');
  // SQLite's own lower() folds ASCII letters only; this one folds as JavaScript and PostgreSQL do (Ö to ö), for case-blind search.
  database.function('lower', { deterministic: true }, (text: unknown) => (text === null ? null : String(text).toLowerCase()));
  return new Kysely<Database>({ dialect: new ImmediateSqliteDialect({ database: reusingStatements(database) }, database, busyWaitMs) });
}

/** The longest a PostgreSQL connection may take to open (pg's connectionTimeoutMillis). */
const CONNECT_TIMEOUT_MS = 10_000;

// pg is loaded only by a postgres:// deployment (SQLite ones never need it); Kysely calls this on the first query.
async function postgresPool(url: string): Promise<PostgresPool> {
  const { default: pg } = await import('pg');
  // A server that accepts the connection and never answers (a stuck pooler, a half-open network) would
  // otherwise hold a start, a one-shot command or a request for good: 10 s to connect, then an error.
  const pool = new pg.Pool({ connectionString: url, max: 10, connectionTimeoutMillis: CONNECT_TIMEOUT_MS });
  // A client losing its server must not crash the process. An idle one reports to the pool's
  // listener; one checked out (a query in flight) has none of the pool's (pg-pool takes it off while
  // lent) and Kysely adds none, so each client gets its own for life. The query in flight fails with
  // the error, and pg-pool drops the broken client when it comes back.
  pool.on('error', () => undefined);
  pool.on('connect', (client) => client.on('error', () => undefined));
  // A connection that cannot be had is the database's outage: a 503 for a request, a retry for a job.
  return {
    connect: () => pool.connect().catch((err: unknown) => Promise.reject(new DatabaseUnreachable(err))),
    end: () => pool.end(),
  };
}

function openPostgres(url: string): Kysely<Database> {
  return new Kysely<Database>({ dialect: new PostgresDialect({ pool: () => postgresPool(url) }) });
}

export interface DatabaseOptions {
  /**
   * DURABLE_WRITES: an SQLite commit returns once the disk has it. PostgreSQL
   * keeps its own setting (`synchronous_commit`, on by default).
   */
  durable?: boolean;
  /** SQLite: how long a statement waits for another process's lock (BUSY_WAIT_MS). */
  busyWaitMs?: number;
}

/** The SQLite file `databaseUrl` names (undefined or `sqlite:`: kiln.db in dataDir), or null for PostgreSQL. */
export function sqliteFileOf(databaseUrl: string | undefined, dataDir: string): string | null {
  if (databaseUrl !== undefined && /^postgres(ql)?:/.test(databaseUrl)) return null;
  return databaseUrl?.startsWith('sqlite:') ? databaseUrl.slice('sqlite:'.length).replace(/^\/\//, '') || path.join(dataDir, 'kiln.db') : path.join(dataDir, 'kiln.db');
}

/** `databaseUrl` undefined or `sqlite:` means the SQLite file in dataDir. */
export function openDatabase(databaseUrl: string | undefined, dataDir: string, options: DatabaseOptions = {}): Db {
  const file = sqliteFileOf(databaseUrl, dataDir);
  const isPostgres = file === null;
  let kysely: Kysely<Database>;
  if (file === null) {
    kysely = openPostgres(databaseUrl as string);
  } else {
    kysely = openSqlite(file, options.durable ?? false, options.busyWaitMs ?? BUSY_WAIT_MS);
  }
  const dialect: DialectName = isPostgres ? 'postgres' : 'sqlite';
  return {
    kysely,
    dialect,
    async ping() {
      await kysely.executeQuery(CompiledQuery.raw('select 1'));
    },
    async close() {
      await kysely.destroy();
    },
  };
}

const provider: MigrationProvider = { getMigrations: async () => migrations };

/** Kysely's words for a database that has a migration this version does not know. */
const UNKNOWN_MIGRATION = /previously executed migration (\S+) is missing/;

/**
 * Applies every pending migration, each in a transaction of its own, and
 * returns their names; throws with the failing migration's name. One at a
 * time, so what a migration locks (an ALTER TABLE's exclusive lock, an index
 * build's hold on writes) is let go when it commits, not when the last one
 * does: processes of the version before, still serving during an upgrade,
 * wait for one migration's locks at most. A migration that fails, or a run
 * killed halfway, leaves the ones before it applied and recorded, and none of
 * its own work: the next run goes on from there.
 */
export async function migrateToLatest(db: Db, from: MigrationProvider = provider): Promise<string[]> {
  const migrator = new Migrator({ db: db.kysely, provider: from });
  const applied: string[] = [];
  for (;;) {
    const { error, results } = await migrator.migrateUp();
    if (error) {
      const failed = results?.find((r) => r.status === 'Error');
      const message = error instanceof Error ? error.message : String(error);
      const newer = UNKNOWN_MIGRATION.exec(message);
      if (newer) {
        throw new Error(
          `the database was migrated by a newer version of Kiln (it has migration ${newer[1]}, which this version does not know); downgrades are not supported: run that version or a later one, or restore the backup taken before the upgrade`,
        );
      }
      throw new Error(`migration failed${failed ? ` (${failed.migrationName})` : ''}: ${message}`);
    }
    const done = (results ?? []).filter((r) => r.status === 'Success').map((r) => r.migrationName);
    if (done.length === 0) break;
    applied.push(...done);
  }
  // Each migration's commit added its pages to SQLite's write-ahead log, which keeps the size it grew to:
  // written back and emptied now, so a migration (an upgrade's indexes on large tables) leaves no log as big behind.
  if (applied.length > 0 && db.dialect === 'sqlite') await db.kysely.executeQuery(CompiledQuery.raw('pragma wal_checkpoint(TRUNCATE)'));
  return applied;
}

/**
 * Adds `FOR UPDATE` on PostgreSQL. SQLite needs nothing: its transactions
 * already hold the database's write lock (BEGIN IMMEDIATE).
 */
export function lockForUpdate<DB, TB extends keyof DB, O>(
  dialect: DialectName,
  query: SelectQueryBuilder<DB, TB, O>,
): SelectQueryBuilder<DB, TB, O> {
  return dialect === 'postgres' ? query.forUpdate() : query;
}

/**
 * Adds `FOR KEY SHARE` on PostgreSQL: the row cannot be deleted until the
 * transaction ends, while other updates of it go on. SQLite needs nothing,
 * as for lockForUpdate.
 */
export function lockAgainstDelete<DB, TB extends keyof DB, O>(
  dialect: DialectName,
  query: SelectQueryBuilder<DB, TB, O>,
): SelectQueryBuilder<DB, TB, O> {
  return dialect === 'postgres' ? query.forKeyShare() : query;
}

/**
 * Adds `FOR SHARE` on PostgreSQL: the row cannot be updated or deleted until
 * the transaction ends, and a row being updated now is read as it is once
 * that update commits. SQLite needs nothing, as for lockForUpdate.
 */
export function lockAgainstUpdate<DB, TB extends keyof DB, O>(
  dialect: DialectName,
  query: SelectQueryBuilder<DB, TB, O>,
): SelectQueryBuilder<DB, TB, O> {
  return dialect === 'postgres' ? query.forShare() : query;
}

/** True when `error` is a unique-constraint violation, on either dialect. */
export function isUniqueViolation(error: unknown): boolean {
  if (typeof error !== 'object' || error === null) return false;
  const e = error as { code?: unknown };
  return e.code === '23505' || e.code === 'SQLITE_CONSTRAINT_UNIQUE' || e.code === 'SQLITE_CONSTRAINT_PRIMARYKEY';
}

export type { Database } from './schema.js';
