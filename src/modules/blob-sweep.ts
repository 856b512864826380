/**
 * The orphan sweep (`kiln blobs sweep`). Uploads write their blobs before
 * their rows and deletes remove rows before blobs (docs/architecture.md), so
 * a crash, or a blob delete that failed, can leave blobs no row points at.
 * They are harmless but take space; this finds and removes them.
 *
 * Every module's blobs sit under `<namespace>/<id…>/`, one directory per
 * owning row. A group of blobs goes only when its row is missing and its
 * newest blob is older than `olderThanMs`: an upload in flight writes its
 * blobs milliseconds before its row, and ids are never reused, so a row
 * cannot appear for a group that old.
 *
 * A sweep against the wrong database would take the whole store: a new
 * SQLite file a restart made after kiln.db was lost, or another deployment's
 * database, has a row for none of the blobs (a DATA_DIR with no kiln.db at
 * all, as a PostgreSQL deployment's run from cron without its .env, stops
 * the command before it opens one). So the sweep first finds the orphans, removing nothing, and
 * refuses (SweepRefused) when the database looks like it is not the store's
 * (`refusal`); `force` sweeps all the same.
 */
import { existsSync } from 'node:fs';
import path from 'node:path';
import { parseArgs } from 'node:util';
import { sql, type Kysely } from 'kysely';
import type { Config } from '../config.js';
import { createContext, type Context } from '../context.js';
import { UsageError } from '../errors.js';
import { sqliteFileOf } from '../platform/db/index.js';
import type { Database } from '../platform/db/schema.js';
import { existingUploads } from './pipeline/service.js';

export interface BlobOwner {
  /** The first key segment, as the module's blobKey writes it. */
  namespace: string;
  /** Key segments after the namespace up to the owning id: `gallery/<image_id>/…` is 1, `orders/<order_id>/<file_id>/…` 2. */
  depth: number;
  /** Of `ids`, the ones whose row exists. */
  existing(db: Kysely<Database>, ids: string[]): Promise<string[]>;
  /** No row ever owns these blobs (the health probe's): their being orphans says nothing about the database, so the guard does not count them. */
  unowned?: true;
  /** The table and id column whose every row has blobs of its own under this namespace (a backup checks its copy against them). */
  rows?: { table: keyof Database; column: string };
}

/** `existing` for an owner whose id is `column` of `table` (both names from this file, never from input). */
function rowsIn(table: keyof Database, column: string): BlobOwner['existing'] {
  return async (db, ids) =>
    (await sql<{ id: string }>`select ${sql.ref(column)} as id from ${sql.table(table)} where ${sql.ref(column)} in (${sql.join(ids)})`.execute(db)).rows.map((r) => r.id);
}

/** An owner whose blobs belong to the rows of `table` by `column`, each row with blobs of its own. */
function ownedByRows(namespace: string, depth: number, table: keyof Database, column: string): BlobOwner {
  return { namespace, depth, existing: rowsIn(table, column), rows: { table, column } };
}

/** One per module that stores blobs; a module that adds a namespace adds its line here. */
export const BLOB_OWNERS: readonly BlobOwner[] = [
  ownedByRows('gallery', 1, 'gallery_images', 'image_id'),
  ownedByRows('product', 1, 'product_images', 'image_id'),
  ownedByRows('ai-edits', 1, 'ai_files', 'file_id'),
  ownedByRows('orders', 2, 'custom_order_files', 'file_id'),
  // Uploaded product pictures; a barcode's picture attached to a product lives under `product/`, owned above.
  ownedByRows('shop', 1, 'shop_product_images', 'image_id'),
  // Pipeline photos and models: `pipeline/<upload_id>/…`, owned by the photogrammetry job whose dedupe key names the upload.
  { namespace: 'pipeline', depth: 1, existing: existingUploads },
  // The health check's probe, `health/<id>/probe`: deleted as soon as it is read back, so one still there (a crash, a
  // failed read) is owned by nothing.
  { namespace: 'health', depth: 1, existing: async () => [], unowned: true },
];

/** The owner's prefix of `key` and the id that ends it, or null for a key not deep enough to have an owner. */
export function ownerOf(owner: BlobOwner, key: string): { prefix: string; id: string } | null {
  const segments = key.split('/');
  // The namespace, the owner path, and at least one file name below it.
  if (segments[0] !== owner.namespace || segments.length < owner.depth + 2) return null;
  const path = segments.slice(0, owner.depth + 1);
  return { prefix: path.join('/'), id: path[owner.depth] as string };
}

export interface SweepOptions {
  /** A group of blobs younger than this is left alone, row or not. */
  olderThanMs: number;
  /** Report what would go, remove nothing. */
  dryRun?: boolean;
  /** Sweep even when the database knows too few of the groups (see `refusal`). */
  force?: boolean;
  now?: number;
}

export interface SweepReport {
  /** Groups of blobs (one per owning row) looked at. */
  groups: number;
  /** Prefixes of the groups without a row and old enough: removed, or with dryRun what would be. */
  orphans: string[];
  /** Groups without a row but written too recently to remove. */
  tooRecent: number;
  /** Empty directories of a store that has them, left by a crash before a first file was written: removed, or with dryRun what would be. */
  emptyDirectories: string[];
}

/** Rows are asked for this many groups at a time, so memory stays flat however many blobs there are. */
const BATCH = 500;

/**
 * The guard's thresholds. A sweep that would remove more than this share of the groups, and at least
 * GUARD_MIN_ORPHANS of them, is refused: crashes and failed deletes leave a few orphans among many
 * live groups, while a database a reset emptied has rows only for what was uploaded since. The
 * minimum spares a small store a refusal over two or three orphans beside one image; a database with
 * a row for none of the groups is refused whatever their number (a new database of a small store).
 */
export const GUARD_MAX_SHARE = 0.5;
export const GUARD_MIN_ORPHANS = 5;

/** What the guard counts: groups of owners that rows own (not `unowned`). */
export interface GuardCounts {
  /** Groups looked at. */
  groups: number;
  /** Of them, the ones whose row exists. */
  known: number;
  /** Of them, the ones that would be removed. */
  orphans: number;
}

/** Why a sweep with these counts must not run, or null when it may. */
export function refusal(counts: GuardCounts): string | null {
  if (counts.orphans === 0) return null;
  const removed = counts.orphans === counts.groups ? 'all of them' : `${counts.orphans} of them`;
  if (counts.known === 0) return `the database knows none of these ${counts.groups} stored images, and the sweep would remove ${removed}`;
  if (counts.orphans > counts.groups * GUARD_MAX_SHARE && counts.orphans >= GUARD_MIN_ORPHANS) {
    return `the database knows only ${counts.known} of these ${counts.groups} stored images, and the sweep would remove ${removed} (more than ${GUARD_MAX_SHARE * 100}%)`;
  }
  return null;
}

/** A sweep the guard stopped: nothing was removed. `report` says what would have been (empty directories not looked for). */
export class SweepRefused extends Error {
  constructor(
    readonly reason: string,
    readonly report: SweepReport,
    readonly dryRun: boolean,
    /** The database the sweep asked, in words, when the caller knows it (the command line does). */
    readonly database?: string,
  ) {
    super(
      `${dryRun ? 'a sweep would refuse' : 'refusing to sweep'}: ${reason}. Is DATABASE_URL / DATA_DIR the deployment's?` +
        `${database ? ` This run used ${database}.` : ''}` +
        ' A new database, one made where another was meant, or one emptied and not yet restored looks like this.' +
        ` ${dryRun ? 'Nothing would be removed; with --force the sweep would remove them.' : 'Nothing was removed; --force sweeps all the same.'}`,
    );
    this.name = 'SweepRefused';
  }
}

export async function sweepOrphanBlobs(ctx: Pick<Context, 'db' | 'blobs' | 'log'>, options: SweepOptions, owners: readonly BlobOwner[] = BLOB_OWNERS): Promise<SweepReport> {
  const cutoff = (options.now ?? Date.now()) - options.olderThanMs;
  const dryRun = options.dryRun === true;
  const report: SweepReport = { groups: 0, orphans: [], tooRecent: 0, emptyDirectories: [] };
  const counts: GuardCounts = { groups: 0, known: 0, orphans: 0 };
  // First every owner's orphans are found, removing nothing, so the guard can stop a sweep before its
  // first delete. Their prefixes are kept per owner (report.orphans holds them all the same).
  const orphansOf: string[][] = [];
  for (const owner of owners) {
    const orphans: string[] = [];
    orphansOf.push(orphans);
    // prefix → { id, newest blob's time }; a group listed again after a flush is simply checked again.
    const pending = new Map<string, { id: string; newest: number }>();
    const flush = async (): Promise<void> => {
      const groups = [...pending.entries()];
      pending.clear();
      if (groups.length === 0) return;
      report.groups += groups.length;
      const alive = new Set(await owner.existing(ctx.db.kysely, groups.map(([, g]) => g.id)));
      if (!owner.unowned) counts.groups += groups.length;
      for (const [prefix, group] of groups) {
        if (alive.has(group.id)) {
          if (!owner.unowned) counts.known++;
          continue;
        }
        if (group.newest >= cutoff) {
          report.tooRecent++;
          continue;
        }
        orphans.push(prefix);
        if (!owner.unowned) counts.orphans++;
      }
    };
    for await (const blob of ctx.blobs.list(owner.namespace)) {
      const found = ownerOf(owner, blob.key);
      if (!found) continue;
      const group = pending.get(found.prefix);
      const at = blob.modifiedAt.getTime();
      if (group) group.newest = Math.max(group.newest, at);
      else pending.set(found.prefix, { id: found.id, newest: at });
      if (pending.size >= BATCH) await flush();
    }
    await flush();
    report.orphans.push(...orphans);
  }

  const reason = options.force ? null : refusal(counts);
  if (reason !== null) {
    ctx.log.warn({ ...counts, dryRun }, 'orphan blob sweep refused: the database knows too few of the stored blobs');
    throw new SweepRefused(reason, report, dryRun);
  }

  for (const [i, owner] of owners.entries()) {
    // What an upload that died before its first file left: a directory holding nothing, as old as a
    // group would have to be. Before the owner's orphan groups, so that a group removed below takes its
    // parents with it: an empty sibling kept the parent, and the removal touched it, too recent for this
    // run to take.
    if (ctx.blobs.removeEmptyDirectories) report.emptyDirectories.push(...(await ctx.blobs.removeEmptyDirectories(owner.namespace, new Date(cutoff), dryRun)));
    if (!dryRun) for (const prefix of orphansOf[i] as string[]) await ctx.blobs.deletePrefix(prefix);
  }
  ctx.log.info(
    { groups: report.groups, orphans: report.orphans.length, tooRecent: report.tooRecent, emptyDirectories: report.emptyDirectories.length, dryRun, forced: options.force === true },
    'orphan blob sweep',
  );
  return report;
}

export const BLOBS_USAGE = 'kiln blobs sweep [--dry-run] [--older-than MINUTES] [--force]';

/** The database and blob store a command runs against, in words (no password): what a refusal shows the operator to check. */
export function describeStores(config: Pick<Config, 'databaseUrl' | 'dataDir' | 'storage' | 's3'>): string {
  let database: string;
  if (config.databaseUrl === undefined) database = `SQLite at ${sqliteFileOf(undefined, config.dataDir) as string} (DATABASE_URL is not set)`;
  else if (config.databaseUrl.startsWith('sqlite:')) database = `SQLite from DATABASE_URL ${config.databaseUrl}`;
  else {
    const url = new URL(config.databaseUrl);
    url.username = '';
    url.password = '';
    database = `PostgreSQL at ${url.host}${url.pathname}`;
  }
  const store = config.storage === 's3' && config.s3 ? `the bucket ${config.s3.bucket}${config.s3.prefix ? ` (prefix ${config.s3.prefix})` : ''}` : path.join(config.dataDir, 'blobs');
  return `${database}, with blobs in ${store}`;
}

/** Runs `kiln blobs <args>` over the configured database and blob store. */
export async function runBlobsCommand(config: Config, args: string[]): Promise<SweepReport & { dryRun: boolean }> {
  const [sub, ...rest] = args;
  if (sub !== 'sweep') throw new UsageError(`usage: ${BLOBS_USAGE}`);
  let values: { 'dry-run'?: boolean; 'older-than'?: string; force?: boolean };
  try {
    ({ values } = parseArgs({
      args: rest,
      options: { 'dry-run': { type: 'boolean', default: false }, 'older-than': { type: 'string', default: '60' }, force: { type: 'boolean', default: false } },
      strict: true,
    }));
  } catch (err) {
    throw new UsageError(`${err instanceof Error ? err.message : String(err)}\nusage: ${BLOBS_USAGE}`);
  }
  const text = values['older-than'] ?? '';
  const minutes = /^\d+$/.test(text) ? Number(text) : Number.NaN;
  if (!Number.isSafeInteger(minutes) || minutes < 10) throw new UsageError(`--older-than: expected whole minutes, at least 10, got "${values['older-than']}"`);
  const dryRun = values['dry-run'] === true;
  // A database that is not there is not the store's: made new, it would know none of the blobs (the guard would
  // refuse), and would be left behind for the next start to take as the deployment's.
  const sqliteFile = sqliteFileOf(config.databaseUrl, config.dataDir);
  if (sqliteFile !== null && !existsSync(sqliteFile)) {
    throw new UsageError(`there is no database at ${sqliteFile}: a sweep needs the deployment's (set DATA_DIR, or DATABASE_URL when it is PostgreSQL); nothing was removed`);
  }
  // A dry run removes nothing: not even the temp files a dead process left, which any other start clears.
  const ctx = await createContext(config, { logTo: 'stderr', keepTempFiles: dryRun, oneShot: true });
  try {
    return { ...(await sweepOrphanBlobs(ctx, { olderThanMs: minutes * 60_000, dryRun, force: values.force === true })), dryRun };
  } catch (err) {
    // Cron runs this where no one reads the settings it found: the refusal names them.
    if (err instanceof SweepRefused) throw new SweepRefused(err.reason, err.report, err.dryRun, describeStores(config));
    throw err;
  } finally {
    await ctx.close();
  }
}
