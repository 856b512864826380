/**
 * `kiln backup DIR`: a copy of what a deployment keeps, taken while it serves.
 * DIR is laid out as DATA_DIR is (`kiln.db`, `blobs/`, `secrets/`), so a
 * restore is a copy back into an empty DATA_DIR (docs/operations.md, Backups).
 *
 * Rows and files must agree in the copy: a row whose file is missing is an
 * image that can never be served, where a file without a row is only space
 * (`kiln blobs sweep` takes it). Uploads write their files before their rows
 * and deletes remove rows before files, so the files are copied twice around
 * the database's snapshot:
 *
 *   1. every blob, as the store holds it then;
 *   2. the database, one consistent snapshot (SQLite's VACUUM INTO);
 *   3. every blob that appeared since the first pass.
 *
 * A row in the snapshot was committed after its files were written, so they
 * were there for one of the passes: the first, or, when they came later, the
 * second. An image uploaded after the first pass went past its directory and
 * deleted before the second reached it is a row without its files, though:
 * on SQLite the copy is checked against its snapshot, and such rows make the
 * snapshot and the second pass run again (they are gone from the next one).
 *
 * The snapshot is SQLite's VACUUM INTO, or PostgreSQL's own pg_dump (one
 * snapshot too, in its custom format, for pg_restore). A bucket's blobs are
 * copied here like the local disk's.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync } from 'node:fs';
import { mkdir, readdir, readFile, realpath, rm, stat, writeFile } from 'node:fs/promises';
import path from 'node:path';
import Sqlite from 'better-sqlite3';
import { sql } from 'kysely';
import type { Config } from '../config.js';
import { openBlobStore } from '../context.js';
import { NotFound, UsageError } from '../errors.js';
import { assertKey, type BlobStore } from '../platform/blobs/index.js';
import { openDatabase, sqliteFileOf, type Db } from '../platform/db/index.js';
import { isMissing, streamToNewFile, syncDirectories, syncFile } from '../platform/files.js';
import { BLOB_OWNERS, describeStores, ownerOf } from './blob-sweep.js';

export const BACKUP_USAGE = 'kiln backup DIR';

/** Blobs copied at once: a bucket answers each read after a round trip, so a few in flight keep the copy moving. */
const COPY_CONCURRENCY = 8;

export interface BlobCopyReport {
  blobs: number;
  bytes: number;
  /** Listed, then deleted before they could be read: their rows were deleted first, so the copy needs none of them. */
  vanished: number;
  /** Files under the store's namespaces whose names are not blob keys (`.DS_Store`, `thumb copy.jpg`): not Kiln's, not copied. */
  skipped: number;
  /** Rows of the snapshot whose files are not in the copy after the last try (SQLite only; see the top of this file). */
  missing: number;
}

export interface BackupReport extends BlobCopyReport {
  dir: string;
  /** The database's snapshot in `dir`: `kiln.db` (SQLite) or `kiln.pgdump` (PostgreSQL, for pg_restore). */
  database: string;
  /** File names copied from DATA_DIR/secrets. */
  secrets: string[];
}

/** Every blob Kiln owns, namespace by namespace (the health probe's, owned by nothing, is left out). */
async function* everyBlob(store: BlobStore): AsyncIterable<string> {
  for (const owner of BLOB_OWNERS) {
    if (owner.unowned) continue;
    for await (const blob of store.list(owner.namespace)) yield blob.key;
  }
}

/** Tries again (a new snapshot and a pass) while rows of the snapshot lack their files, this many times in all. */
const SNAPSHOT_TRIES = 3;

/** A key of the store, or null for a name Kiln never writes (a file someone put there). */
function asKey(key: string): string | null {
  try {
    assertKey(key);
    return key;
  } catch {
    return null;
  }
}

/**
 * Copies every blob of `store` not in `copied` into `dir`/<key>, up to
 * COPY_CONCURRENCY at a time, adding each key copied to `copied`. Each file
 * is flushed: a backup is for the day the disk is not there.
 */
async function copyPass(store: BlobStore, dir: string, copied: Set<string>, seen: Set<string>, report: BlobCopyReport, stop?: AbortSignal): Promise<void> {
  const made = new Set<string>();
  const copyOne = async (key: string): Promise<void> => {
    const target = path.join(dir, ...key.split('/'));
    const parent = path.dirname(target);
    if (!made.has(parent)) {
      await mkdir(parent, { recursive: true, mode: 0o700 });
      made.add(parent);
    }
    let source;
    try {
      source = await store.read(key);
    } catch (err) {
      if (err instanceof NotFound) {
        report.vanished += 1;
        return;
      }
      throw err;
    }
    await streamToNewFile(source, async function* count(chunks) {
      for await (const chunk of chunks) {
        const bytes = typeof chunk === 'string' ? Buffer.from(chunk) : chunk;
        report.bytes += bytes.length;
        yield bytes;
      }
    }, target);
    await syncFile(target);
    copied.add(key);
    report.blobs += 1;
  };
  const running = new Set<Promise<void>>();
  let failure: { err: unknown } | undefined;
  for await (const listed of everyBlob(store)) {
    if (failure || stop?.aborted) break;
    if (seen.has(listed)) continue;
    seen.add(listed);
    const key = asKey(listed);
    if (key === null) {
      report.skipped += 1;
      continue;
    }
    // Every copy has its handler from the start: a failure is kept, no new copy starts, and those under way end first.
    const task: Promise<void> = copyOne(key)
      .catch((err: unknown) => {
        failure ??= { err };
      })
      .finally(() => running.delete(task));
    running.add(task);
    if (running.size >= COPY_CONCURRENCY) await Promise.race(running);
  }
  await Promise.all(running);
  if (failure) throw failure.err;
  stop?.throwIfAborted();
}

/** What the copy is checked against: a snapshot's rows, by owner, whose files the copy must hold; null when it cannot be read here (pg_dump's). */
export type SnapshotRows = () => Promise<Map<string, string[]> | null>;

/** Rows of `rows` (namespace → ids) with no file in `copied`. */
function rowsWithoutFiles(rows: Map<string, string[]>, copied: Set<string>): number {
  const present = new Set<string>();
  for (const key of copied) {
    for (const owner of BLOB_OWNERS) {
      const found = ownerOf(owner, key);
      if (found) present.add(`${owner.namespace}/${found.id}`);
    }
  }
  let missing = 0;
  for (const [namespace, ids] of rows) for (const id of ids) if (!present.has(`${namespace}/${id}`)) missing += 1;
  return missing;
}

/**
 * The blobs of `store` into `dir`, in two passes around `snapshot` (the
 * database's copy): see the top of this file for why that order keeps every
 * row's files. When `rowsOf` can read the snapshot and finds rows without
 * their files (deleted while the copy ran), the snapshot and the second pass
 * run again, SNAPSHOT_TRIES times at most.
 */
export async function copyBlobsAround(store: BlobStore, dir: string, snapshot: () => Promise<void>, rowsOf: SnapshotRows = async () => null, stop?: AbortSignal): Promise<BlobCopyReport> {
  const report: BlobCopyReport = { blobs: 0, bytes: 0, vanished: 0, skipped: 0, missing: 0 };
  const copied = new Set<string>();
  const seen = new Set<string>();
  await copyPass(store, dir, copied, seen, report, stop);
  for (let tries = 1; ; tries++) {
    await snapshot();
    await copyPass(store, dir, copied, seen, report, stop);
    const rows = await rowsOf();
    report.missing = rows === null ? 0 : rowsWithoutFiles(rows, copied);
    if (report.missing === 0 || tries === SNAPSHOT_TRIES) return report;
  }
}

/**
 * SQLite's consistent copy of the whole database, taken inside one read transaction while others write (WAL).
 * The file is made empty first, readable by its owner alone (it holds password hashes): VACUUM INTO fills an empty file as it finds it.
 */
async function snapshotSqlite(db: Db, target: string): Promise<void> {
  // An earlier try's snapshot goes: this one replaces it.
  await rm(target, { force: true });
  await writeFile(target, '', { flag: 'wx', mode: 0o600 });
  await sql`vacuum into ${target}`.execute(db.kysely);
  await syncFile(target);
}

/** libpq's environment for `databaseUrl`: pg_dump reads the password there, never from its command line, which `ps` shows. */
export function libpqEnvironment(databaseUrl: string): Record<string, string> {
  const url = new URL(databaseUrl);
  const env: Record<string, string> = {};
  const set = (name: string, value: string | null) => {
    if (value) env[name] = decodeURIComponent(value);
  };
  // `postgres:///kiln?host=/var/run/postgresql` names a socket directory, as libpq's own URLs do.
  // An IPv6 host comes in brackets in a URL (`[::1]`), and without them to libpq.
  set('PGHOST', url.searchParams.get('host') ?? url.hostname.replace(/^\[(.*)\]$/, '$1'));
  set('PGPORT', url.port);
  set('PGUSER', url.username);
  set('PGPASSWORD', url.password);
  set('PGDATABASE', url.pathname.slice(1));
  set('PGSSLMODE', url.searchParams.get('sslmode'));
  return env;
}

/**
 * PostgreSQL's consistent copy: pg_dump in its custom format (one snapshot, taken while others write;
 * pg_restore reads it). pg_dump must be of the server's major version or newer, as it says itself.
 */
async function dumpPostgres(databaseUrl: string, target: string, running: Set<ChildProcess>): Promise<void> {
  await writeFile(target, '', { flag: 'wx', mode: 0o600 });
  const child = spawn('pg_dump', ['--format=custom', '--no-owner', '--file', target], {
    env: { ...process.env, ...libpqEnvironment(databaseUrl) },
    stdio: ['ignore', 'ignore', 'pipe'],
  });
  // A backup stopped by a signal stops its dump too, rather than leave it finishing a file no one will keep.
  running.add(child);
  child.once('close', () => running.delete(child));
  let stderr = '';
  child.stderr.setEncoding('utf8').on('data', (text: string) => (stderr = (stderr + text).slice(-2000)));
  const [code, signal] = await new Promise<[number | null, NodeJS.Signals | null]>((resolve, reject) => {
    child.once('error', reject);
    child.once('close', (exitCode, exitSignal) => resolve([exitCode, exitSignal]));
  }).catch((err: unknown) => {
    if (isMissing(err)) throw new Error('pg_dump is not on PATH: a backup of a PostgreSQL database needs PostgreSQL\'s client tools (Debian: postgresql-client), of the server\'s major version or newer');
    throw err;
  });
  if (code !== 0) throw new Error(`pg_dump failed (${signal ? `killed by ${signal}` : `exit ${code}`}): ${stderr.trim().split('\n').slice(-3).join(' ') || 'no message'}`);
  await syncFile(target);
}

/** The generated secrets (the JWT key, unless JWT_SECRET is set): without them every token and signed link stops working. */
async function copySecrets(dataDir: string, dir: string): Promise<string[]> {
  const from = path.join(dataDir, 'secrets');
  let names: string[];
  try {
    // A secret may be a symlink (a mounted secret): what it points at is copied, as a file of its own.
    const entries = (await readdir(from)).filter((name) => !name.endsWith('.tmp'));
    names = [];
    for (const name of entries) if ((await stat(path.join(from, name))).isFile()) names.push(name);
  } catch (err) {
    if (isMissing(err)) return [];
    throw err;
  }
  if (names.length === 0) return [];
  const to = path.join(dir, 'secrets');
  await mkdir(to, { mode: 0o700 });
  for (const name of names) {
    await writeFile(path.join(to, name), await readFile(path.join(from, name)), { flag: 'wx', mode: 0o600 });
    await syncFile(path.join(to, name));
  }
  return names;
}

/** Every directory under `dir`, deepest first, and `dir` itself last: what a copy must flush for its files to be there after a power cut. */
async function directoriesUnder(dir: string): Promise<string[]> {
  const found: string[] = [];
  for (const entry of await readdir(dir, { withFileTypes: true })) {
    if (entry.isDirectory()) found.push(...(await directoriesUnder(path.join(dir, entry.name))));
  }
  found.push(dir);
  return found;
}

/** A new directory for the backup, or an empty one: a backup never writes over another, nor beside other files. True when it made it. */
async function claimDirectory(dir: string): Promise<boolean> {
  if (existsSync(dir)) {
    const entries = await readdir(dir).catch((err: unknown) => {
      throw new UsageError(`${dir} cannot be read as a directory (${(err as NodeJS.ErrnoException).code ?? String(err)}); give a new or empty directory`);
    });
    if (entries.length > 0) throw new UsageError(`${dir} is not empty: give a new or empty directory, so that no earlier backup is written over`);
    return false;
  }
  await mkdir(dir, { recursive: true, mode: 0o700 });
  return true;
}

/** `dir` as the file system resolves it, symlinks included, for its part that exists (a backup directory may not yet). */
async function realPathOf(dir: string): Promise<string> {
  try {
    return await realpath(dir);
  } catch (err) {
    if (!isMissing(err) || path.dirname(dir) === dir) throw err;
    return path.join(await realPathOf(path.dirname(dir)), path.basename(dir));
  }
}

/** Whether the database has a row of any table whose rows own blobs: a store with none of them then is not the deployment's. */
async function hasBlobRows(db: Db): Promise<boolean> {
  for (const owner of BLOB_OWNERS) {
    if (!owner.rows) continue;
    const { rows } = await sql<{ one: number }>`select 1 as one from ${sql.table(owner.rows.table)} limit 1`.execute(db.kysely);
    if (rows.length > 0) return true;
  }
  return false;
}

/** The rows of a SQLite snapshot that own blobs, namespace by namespace: what the copy must hold files for. */
function sqliteSnapshotRows(file: string): Map<string, string[]> {
  const snapshot = new Sqlite(file, { readonly: true, fileMustExist: true });
  try {
    const rows = new Map<string, string[]>();
    for (const owner of BLOB_OWNERS) {
      if (!owner.rows) continue;
      // Table and column names come from BLOB_OWNERS, never from input.
      const ids = snapshot.prepare(`select "${owner.rows.column}" as id from "${owner.rows.table}"`).pluck().all() as string[];
      rows.set(owner.namespace, ids);
    }
    return rows;
  } finally {
    snapshot.close();
  }
}

/** Rows of the snapshot stayed without their files after every try: the copy is not one a restore could trust. */
export class BackupIncomplete extends Error {}

/** Runs `kiln backup <args>`: the configured database, blob store and secrets into DIR. */
export async function runBackupCommand(config: Config, args: string[]): Promise<BackupReport> {
  const [target, ...extra] = args;
  if (target === undefined || target.startsWith('-') || extra.length > 0) throw new UsageError(`usage: ${BACKUP_USAGE}`);
  const dir = path.resolve(target);
  const sqliteFile = sqliteFileOf(config.databaseUrl, config.dataDir);
  // Opening a SQLite file that is not there would make an empty one: a backup of nothing, and a new database for the next start.
  if (sqliteFile !== null && !existsSync(sqliteFile)) {
    throw new UsageError(`there is no database at ${sqliteFile}: a backup needs the deployment's (set DATA_DIR, or DATABASE_URL as the deployment has it); nothing was written`);
  }
  // Compared as the file system resolves them: a symlink into DATA_DIR is inside it too (a backup into blobs/ would copy itself).
  const dataDir = await realPathOf(path.resolve(config.dataDir));
  const real = await realPathOf(dir);
  if (real === dataDir || real.startsWith(dataDir + path.sep)) {
    throw new UsageError(`${dir} is inside DATA_DIR (${dataDir}): a backup belongs somewhere else, so that losing one does not lose the other`);
  }
  const made = await claimDirectory(dir);
  const closers: Array<() => Promise<void> | void> = [];
  const dumps = new Set<ChildProcess>();
  // Stopped midway (Ctrl-C, a supervisor's SIGTERM): the half copy goes, a dump under way with it, and the exit says so.
  const stop = new AbortController();
  const onSignal = (signal: NodeJS.Signals) => {
    if (!stop.signal.aborted) stop.abort(new Error(`stopped by ${signal}; the half copy was removed`));
    for (const child of dumps) child.kill('SIGTERM');
  };
  process.on('SIGINT', onSignal);
  process.on('SIGTERM', onSignal);
  const checkStopped = () => stop.signal.throwIfAborted();
  try {
    // No migrations: a backup taken before an upgrade must hold the version it was taken from.
    const db = openDatabase(config.databaseUrl, config.dataDir);
    closers.push(() => db.close());
    const store = await openBlobStore(config, path.join(config.dataDir, 'tmp'), closers);
    const database = db.dialect === 'sqlite' ? 'kiln.db' : 'kiln.pgdump';
    const snapshotFile = path.join(dir, database);
    const secrets = await copySecrets(config.dataDir, dir);
    const blobs = await copyBlobsAround(
      store,
      path.join(dir, 'blobs'),
      async () => {
        checkStopped();
        if (db.dialect === 'sqlite') await snapshotSqlite(db, snapshotFile);
        else await dumpPostgres(config.databaseUrl as string, snapshotFile, dumps);
        checkStopped();
      },
      async () => (db.dialect === 'sqlite' ? sqliteSnapshotRows(snapshotFile) : null),
      stop.signal,
    );
    checkStopped();
    // The blob sweep's guard, for a backup: a database with stored images beside a store holding none means a DATA_DIR
    // (or STORAGE) that is not the deployment's, and a backup of it would have rows and no files.
    if (blobs.blobs === 0 && (await hasBlobRows(db))) {
      throw new UsageError(`the database has stored images, but the blob store (${describeStores(config)}) holds none: DATA_DIR or STORAGE is not the deployment's; nothing was kept`);
    }
    if (blobs.missing > 0) {
      throw new BackupIncomplete(`${blobs.missing} rows of the database's snapshot have no files in the copy: their images were deleted while it ran, ${SNAPSHOT_TRIES} tries in a row; run the backup again; nothing was kept`);
    }
    await syncDirectories(await directoriesUnder(dir));
    return { dir, database, secrets, ...blobs };
  } catch (err) {
    // Half a backup must not pass for one: what this run wrote goes, and the directory with it when this run made it.
    if (made) await rm(dir, { recursive: true, force: true });
    else await Promise.all((await readdir(dir).catch(() => [])).map((name) => rm(path.join(dir, name), { recursive: true, force: true })));
    throw err;
  } finally {
    process.off('SIGINT', onSignal);
    process.off('SIGTERM', onSignal);
    for (const close of closers.reverse()) await close();
  }
}
