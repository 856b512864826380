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
 */
import { parseArgs } from 'node:util';
import { sql, type Kysely } from 'kysely';
import type { Config } from '../config.js';
import { createContext, type Context } from '../context.js';
import { UsageError } from '../errors.js';
import type { Database } from '../platform/db/schema.js';
import { existingUploads } from './pipeline/service.js';

export interface BlobOwner {
  /** The first key segment, as the module's blobKey writes it. */
  namespace: string;
  /** Key segments after the namespace up to the owning id: `gallery/<image_id>/…` is 1, `orders/<order_id>/<file_id>/…` 2. */
  depth: number;
  /** Of `ids`, the ones whose row exists. */
  existing(db: Kysely<Database>, ids: string[]): Promise<string[]>;
}

/** `existing` for an owner whose id is `column` of `table` (both names from this file, never from input). */
function rowsIn(table: keyof Database, column: string): BlobOwner['existing'] {
  return async (db, ids) =>
    (await sql<{ id: string }>`select ${sql.ref(column)} as id from ${sql.table(table)} where ${sql.ref(column)} in (${sql.join(ids)})`.execute(db)).rows.map((r) => r.id);
}

/** One per module that stores blobs; a module that adds a namespace adds its line here. */
export const BLOB_OWNERS: readonly BlobOwner[] = [
  { namespace: 'gallery', depth: 1, existing: rowsIn('gallery_images', 'image_id') },
  { namespace: 'product', depth: 1, existing: rowsIn('product_images', 'image_id') },
  { namespace: 'ai-edits', depth: 1, existing: rowsIn('ai_files', 'file_id') },
  { namespace: 'orders', depth: 2, existing: rowsIn('custom_order_files', 'file_id') },
  // Uploaded product pictures; a barcode's picture attached to a product lives under `product/`, owned above.
  { namespace: 'shop', depth: 1, existing: rowsIn('shop_product_images', 'image_id') },
  // Pipeline photos and models: `pipeline/<upload_id>/…`, owned by the photogrammetry job whose dedupe key names the upload.
  { namespace: 'pipeline', depth: 1, existing: existingUploads },
  // The health check's probe, `health/<id>/probe`: deleted as soon as it is read back, so one still there (a crash, a
  // failed read) is owned by nothing.
  { namespace: 'health', depth: 1, existing: async () => [] },
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

export async function sweepOrphanBlobs(ctx: Pick<Context, 'db' | 'blobs' | 'log'>, options: SweepOptions, owners: readonly BlobOwner[] = BLOB_OWNERS): Promise<SweepReport> {
  const cutoff = (options.now ?? Date.now()) - options.olderThanMs;
  const report: SweepReport = { groups: 0, orphans: [], tooRecent: 0, emptyDirectories: [] };
  for (const owner of owners) {
    // What an upload that died before its first file left: a directory holding nothing, as old as a
    // group would have to be. First, so that an orphan group removed below takes its parents with it:
    // an empty sibling kept the parent, and the removal touched it, too recent for this run to take.
    if (ctx.blobs.removeEmptyDirectories) report.emptyDirectories.push(...(await ctx.blobs.removeEmptyDirectories(owner.namespace, new Date(cutoff), options.dryRun === true)));
    // prefix → { id, newest blob's time }; a group listed again after a flush is simply checked again.
    const pending = new Map<string, { id: string; newest: number }>();
    const flush = async (): Promise<void> => {
      const groups = [...pending.entries()];
      pending.clear();
      if (groups.length === 0) return;
      report.groups += groups.length;
      const alive = new Set(await owner.existing(ctx.db.kysely, groups.map(([, g]) => g.id)));
      for (const [prefix, group] of groups) {
        if (alive.has(group.id)) continue;
        if (group.newest >= cutoff) {
          report.tooRecent++;
          continue;
        }
        report.orphans.push(prefix);
        if (!options.dryRun) await ctx.blobs.deletePrefix(prefix);
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
  }
  ctx.log.info(
    { groups: report.groups, orphans: report.orphans.length, tooRecent: report.tooRecent, emptyDirectories: report.emptyDirectories.length, dryRun: options.dryRun === true },
    'orphan blob sweep',
  );
  return report;
}

export const BLOBS_USAGE = 'kiln blobs sweep [--dry-run] [--older-than MINUTES]';

/** Runs `kiln blobs <args>` over the configured database and blob store. */
export async function runBlobsCommand(config: Config, args: string[]): Promise<SweepReport & { dryRun: boolean }> {
  const [sub, ...rest] = args;
  if (sub !== 'sweep') throw new UsageError(`usage: ${BLOBS_USAGE}`);
  let values: { 'dry-run'?: boolean; 'older-than'?: string };
  try {
    ({ values } = parseArgs({ args: rest, options: { 'dry-run': { type: 'boolean', default: false }, 'older-than': { type: 'string', default: '60' } }, strict: true }));
  } catch (err) {
    throw new UsageError(`${err instanceof Error ? err.message : String(err)}\nusage: ${BLOBS_USAGE}`);
  }
  const text = values['older-than'] ?? '';
  const minutes = /^\d+$/.test(text) ? Number(text) : Number.NaN;
  if (!Number.isSafeInteger(minutes) || minutes < 10) throw new UsageError(`--older-than: expected whole minutes, at least 10, got "${values['older-than']}"`);
  const dryRun = values['dry-run'] === true;
  // A dry run removes nothing: not even the temp files a dead process left, which any other start clears.
  const ctx = await createContext(config, { logTo: 'stderr', keepTempFiles: dryRun, oneShot: true });
  try {
    return { ...(await sweepOrphanBlobs(ctx, { olderThanMs: minutes * 60_000, dryRun })), dryRun };
  } finally {
    await ctx.close();
  }
}
