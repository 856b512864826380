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
 * second. Only an image uploaded after the first pass listed its directory and
 * deleted again before the second reached it is a row without its file in the
 * copy: an upload and a delete of the same image within those seconds.
 *
 * The snapshot is SQLite's VACUUM INTO, or PostgreSQL's own pg_dump (one
 * snapshot too, in its custom format, for pg_restore). A bucket's blobs are
 * copied here like the local disk's.
 */
import { spawn } from 'node:child_process';
import { existsSync } from 'node:fs';
import { mkdir, readdir, readFile, rm, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { sql } from 'kysely';
import type { Config } from '../config.js';
import { openBlobStore } from '../context.js';
import { NotFound, UsageError } from '../errors.js';
import { assertKey, type BlobStore } from '../platform/blobs/index.js';
import { openDatabase, sqliteFileOf, type Db } from '../platform/db/index.js';
import { isMissing, streamToNewFile, syncDirectories, syncFile } from '../platform/files.js';
import { BLOB_OWNERS } from './blob-sweep.js';

export const BACKUP_USAGE = 'kiln backup DIR';

/** Blobs copied at once: a bucket answers each read after a round trip, so a few in flight keep the copy moving. */
const COPY_CONCURRENCY = 8;

export interface BlobCopyReport {
  blobs: number;
  bytes: number;
  /** Listed, then deleted before they could be read: their rows were deleted first, so the copy needs none of them. */
  vanished: number;
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

/**
 * Copies every blob of `store` not in `copied` into `dir`/<key>, up to
 * COPY_CONCURRENCY at a time, adding each key to `copied`.
 */
async function copyPass(store: BlobStore, dir: string, copied: Set<string>, report: BlobCopyReport): Promise<void> {
  const running = new Set<Promise<void>>();
  const copyOne = async (key: string): Promise<void> => {
    // Keys are the store's own, checked as every key is; a stray file under blobs/ with another name is not a blob.
    assertKey(key);
    const target = path.join(dir, ...key.split('/'));
    await mkdir(path.dirname(target), { recursive: true, mode: 0o700 });
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
    report.blobs += 1;
  };
  try {
    for await (const key of everyBlob(store)) {
      if (copied.has(key)) continue;
      copied.add(key);
      const task = copyOne(key).finally(() => running.delete(task));
      running.add(task);
      if (running.size >= COPY_CONCURRENCY) await Promise.race(running);
    }
    await Promise.all(running);
  } catch (err) {
    // The copies still under way end before the failure is reported: none may write into what the caller removes next.
    await Promise.allSettled(running);
    throw err;
  }
}

/**
 * The blobs of `store` into `dir`, in two passes around `snapshot` (the
 * database's copy): see the top of this file for why that order keeps every
 * row's files.
 */
export async function copyBlobsAround(store: BlobStore, dir: string, snapshot: () => Promise<void>): Promise<BlobCopyReport> {
  const report: BlobCopyReport = { blobs: 0, bytes: 0, vanished: 0 };
  const copied = new Set<string>();
  await copyPass(store, dir, copied, report);
  await snapshot();
  await copyPass(store, dir, copied, report);
  return report;
}

/**
 * SQLite's consistent copy of the whole database, taken inside one read transaction while others write (WAL).
 * The file is made empty first, readable by its owner alone (it holds password hashes): VACUUM INTO fills an empty file as it finds it.
 */
async function snapshotSqlite(db: Db, target: string): Promise<void> {
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
  set('PGHOST', url.searchParams.get('host') ?? url.hostname);
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
async function dumpPostgres(databaseUrl: string, target: string): Promise<void> {
  await writeFile(target, '', { flag: 'wx', mode: 0o600 });
  const child = spawn('pg_dump', ['--format=custom', '--no-owner', '--file', target], {
    env: { ...process.env, ...libpqEnvironment(databaseUrl) },
    stdio: ['ignore', 'ignore', 'pipe'],
  });
  let stderr = '';
  child.stderr.setEncoding('utf8').on('data', (text: string) => (stderr = (stderr + text).slice(-2000)));
  const code = await new Promise<number | null>((resolve, reject) => {
    child.once('error', reject);
    child.once('close', resolve);
  }).catch((err: unknown) => {
    if (isMissing(err)) throw new Error('pg_dump is not on PATH: a backup of a PostgreSQL database needs PostgreSQL\'s client tools (Debian: postgresql-client), of the server\'s major version or newer');
    throw err;
  });
  if (code !== 0) throw new Error(`pg_dump failed (exit ${code}): ${stderr.trim().split('\n').slice(-3).join(' ') || 'no message'}`);
  await syncFile(target);
}

/** The generated secrets (the JWT key, unless JWT_SECRET is set): without them every token and signed link stops working. */
async function copySecrets(dataDir: string, dir: string): Promise<string[]> {
  const from = path.join(dataDir, 'secrets');
  let names: string[];
  try {
    names = (await readdir(from, { withFileTypes: true })).filter((e) => e.isFile() && !e.name.endsWith('.tmp')).map((e) => e.name);
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

/** Runs `kiln backup <args>`: the configured database, blob store and secrets into DIR. */
export async function runBackupCommand(config: Config, args: string[]): Promise<BackupReport> {
  const [target, ...extra] = args;
  if (target === undefined || target.startsWith('-') || extra.length > 0) throw new UsageError(`usage: ${BACKUP_USAGE}`);
  const dir = path.resolve(target);
  const sqliteFile = sqliteFileOf(config.databaseUrl, config.dataDir);
  // Opening a SQLite file that is not there would make an empty one: a backup of nothing, and a new database for the next start.
  if (sqliteFile !== null && !existsSync(sqliteFile)) {
    throw new UsageError(`there is no database at ${sqliteFile}: a backup needs the deployment's (set DATA_DIR, or DATABASE_URL when it is PostgreSQL); nothing was written`);
  }
  if (dir === path.resolve(config.dataDir) || dir.startsWith(path.resolve(config.dataDir) + path.sep)) {
    throw new UsageError(`${dir} is inside DATA_DIR (${path.resolve(config.dataDir)}): a backup belongs somewhere else, so that losing one does not lose the other`);
  }
  const made = await claimDirectory(dir);
  const closers: Array<() => Promise<void> | void> = [];
  try {
    // No migrations: a backup taken before an upgrade must hold the version it was taken from.
    const db = openDatabase(config.databaseUrl, config.dataDir);
    closers.push(() => db.close());
    const store = await openBlobStore(config, path.join(config.dataDir, 'tmp'), closers);
    const database = db.dialect === 'sqlite' ? 'kiln.db' : 'kiln.pgdump';
    const secrets = await copySecrets(config.dataDir, dir);
    const blobs = await copyBlobsAround(store, path.join(dir, 'blobs'), async () => {
      if (db.dialect === 'sqlite') await snapshotSqlite(db, path.join(dir, database));
      else await dumpPostgres(config.databaseUrl as string, path.join(dir, database));
    });
    await syncDirectories(await directoriesUnder(dir));
    return { dir, database, secrets, ...blobs };
  } catch (err) {
    // Half a backup must not pass for one: what this run wrote goes, and the directory with it when this run made it.
    if (made) await rm(dir, { recursive: true, force: true });
    else await Promise.all((await readdir(dir).catch(() => [])).map((name) => rm(path.join(dir, name), { recursive: true, force: true })));
    throw err;
  } finally {
    for (const close of closers.reverse()) await close();
  }
}
