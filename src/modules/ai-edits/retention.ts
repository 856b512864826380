/**
 * What AI edits keep, and for how long (docs/ai-edits.md, "What is kept, and for how long").
 * A client's uploads, results and processes have no account to go with when
 * the client is a backend on the static API_KEY, and /initiate-process alone
 * adds a row per call; without this sweep all of it stays for good.
 *
 * - A process never booked is deleted UNBOOKED_PROCESS_TTL_MS after it was made.
 * - With AI_EDIT_RETENTION_DAYS > 0, a completed or failed process is deleted
 *   that many days after it finished, with its result; an upload made that
 *   long ago is deleted once no remaining process uses it as source or
 *   target. A process that is processing is never deleted, nor what it uses.
 *
 * Every serving or job-running process sweeps a minute after its start, then hourly (routes.ts). Rows go
 * first, then cache entries, then blobs: a blob whose delete fails is an
 * orphan `kiln blobs sweep` removes. Sweeps in several processes at once are
 * harmless: each delete states its rule again and deletes by id, so what
 * another sweep (or a booking) got to first is left alone.
 */
import { isoAgo } from '../../clock.js';
import type { Context } from '../../context.js';
import { HOURLY_MS, PeriodicSweep } from '../../platform/sweep.js';
import { deleteBlobsOf } from './files.js';
import * as repo from './repo.js';
import { cacheKey } from './service.js';

/** How often each process sweeps. */
export const SWEEP_INTERVAL_MS = HOURLY_MS;
/** How long a process may wait to be booked: a client books within minutes of initiating, or not at all. */
export const UNBOOKED_PROCESS_TTL_MS = 24 * 60 * 60_000;
const DAY_MS = 24 * 60 * 60_000;
/** Rows read and deleted at a time, so a sweep of a large backlog holds little in memory and short locks. */
const BATCH = 500;

export interface SweepCounts {
  /** Processes never booked. */
  unbooked: number;
  /** Completed or failed processes past the retention. */
  finished: number;
  /** Their results (a row and its sizes' blobs each). */
  results: number;
  /** Uploads past the retention that nothing uses. */
  uploads: number;
}

/** The sweep as `kiln serve` and `kiln worker` run it; `run()` sweeps once now. */
export function aiEditSweep(ctx: Context): PeriodicSweep {
  return new PeriodicSweep(ctx.log, 'sweeping AI edits', SWEEP_INTERVAL_MS, async () => {
    const counts = await sweepAiEdits(ctx);
    return counts.unbooked + counts.finished + counts.results + counts.uploads;
  });
}

/** One sweep: deletes what has expired, page by page, and logs one line when it deleted anything. */
export async function sweepAiEdits(ctx: Context): Promise<SweepCounts> {
  const counts: SweepCounts = { unbooked: 0, finished: 0, results: 0, uploads: 0 };
  counts.unbooked = (await deleteProcesses(ctx, { statuses: ['initiated'], before: isoAgo(ctx.clock, UNBOOKED_PROCESS_TTL_MS) })).processes;
  const days = ctx.config.aiEditRetentionDays;
  if (days > 0) {
    const before = isoAgo(ctx.clock, days * DAY_MS);
    // Processes first: an upload only an old process used is unused once that process is gone.
    const finished = await deleteProcesses(ctx, { statuses: ['completed', 'failed'], before });
    counts.finished = finished.processes;
    counts.results = finished.results;
    counts.uploads = await deleteUploads(ctx, before);
  }
  if (counts.unbooked + counts.finished + counts.uploads > 0) ctx.log.info({ ...counts, retentionDays: days }, 'AI-edit sweep deleted expired processes and files');
  return counts;
}

async function deleteProcesses(ctx: Context, expired: repo.ExpiredProcesses): Promise<{ processes: number; results: number }> {
  const { kysely } = ctx.db;
  const deleted = { processes: 0, results: 0 };
  for (;;) {
    const page = await repo.expiredProcesses(kysely, expired, BATCH);
    const gone = await kysely.transaction().execute((tx) => repo.deleteExpiredProcesses(tx, expired, page.map((p) => p.init_id)));
    // A status read that raced the delete may cache the row again; a finished state then answers until its TTL ends.
    for (const { init_id: id } of gone) await ctx.cache.delete(cacheKey(id)).catch((err: unknown) => ctx.log.warn({ err, initId: id }, 'cache delete failed'));
    const results = gone.flatMap((p) => (p.result_file_id ? [p.result_file_id] : []));
    await deleteBlobsOf(ctx, results);
    deleted.processes += gone.length;
    deleted.results += results.length;
    // A short page is the last; rows another sweep deleted meanwhile are simply not read again.
    if (page.length < BATCH) return deleted;
  }
}

async function deleteUploads(ctx: Context, before: string): Promise<number> {
  const { kysely, dialect } = ctx.db;
  let deleted = 0;
  for (;;) {
    const { page, gone } = await kysely.transaction().execute(async (tx) => {
      const ids = await repo.unusedUploads(tx, dialect, before, BATCH);
      return { page: ids.length, gone: await repo.deleteUnusedUploads(tx, before, ids) };
    });
    await deleteBlobsOf(ctx, gone);
    deleted += gone.length;
    if (page < BATCH) return deleted;
  }
}
