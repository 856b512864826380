/**
 * AI edits (docs/ai-edits.md): a process is initiated, booked with
 * two of the caller's uploads and a prompt (which queues an `ai_edit` job),
 * and polled until it is completed (with a result url) or failed (with the
 * reason). Owns those rules; routes.ts speaks HTTP, job.ts runs the edit.
 *
 * Status reads go through the TTL cache (`ctx.cache`) in front of the
 * database, which stays the truth: a miss, an eviction or a restart reloads
 * the row. Every state change writes the new state to the cache (coherence).
 * A finished state is cached for CACHE_TTL_SECONDS; a pending one
 * (initiated, processing) only for PENDING_TTL_SECONDS, which bounds how
 * long a poll may see an old state when a read of the row races a write of
 * the next one, or when the job system fails a job behind the handler's back.
 */
import { holdAccount } from '../../auth/account-hold.js';
import type { Principal } from '../../auth/principal.js';
import { isoNow } from '../../clock.js';
import type { Context } from '../../context.js';
import { Conflict, NotFound, ServiceUnavailable } from '../../errors.js';
import { newId } from '../../ids.js';
import { PermanentJobError } from '../../platform/jobs/errors.js';
import { deleteBlobsOf, fileUrl, notYourUpload, ownUpload } from './files.js';
import { NO_KEY_MESSAGE } from './provider.js';
import * as repo from './repo.js';
import type { BookBody } from './schemas.js';

export const AI_EDIT_KIND = 'ai_edit';
export const PENDING_TTL_SECONDS = 2;

export interface AiEditJobInput {
  init_id: string;
}

/** What a status poll needs, cached per init_id; the owner is kept so a hit needs no query to check it. */
export interface ProcessView {
  init_id: string;
  owner_id: string;
  status: repo.ProcessState;
  result_url?: string;
  error?: string;
}

export type StatusAnswer = Omit<ProcessView, 'owner_id'>;

const ID = /^[A-Za-z0-9_-]{1,64}$/;

export function cacheKey(initId: string): string {
  return `ai-edits:process:${initId}`;
}

function viewOf(row: repo.ProcessRow): ProcessView {
  const view: ProcessView = { init_id: row.init_id, owner_id: row.owner_id, status: row.status };
  if (row.status === 'completed' && row.result_file_id) view.result_url = fileUrl(row.result_file_id);
  if (row.status === 'failed') view.error = row.error ?? 'The edit failed.';
  return view;
}

function ttlFor(ctx: Context, status: repo.ProcessState): number | undefined {
  const finished = status === 'completed' || status === 'failed';
  return finished ? undefined : Math.min(PENDING_TTL_SECONDS, ctx.config.cacheTtlSeconds);
}

/** Writes a new state to the cache; when the cache is down, the entry is dropped so it cannot stay stale. */
async function publish(ctx: Context, view: ProcessView): Promise<void> {
  try {
    await ctx.cache.set(cacheKey(view.init_id), view, ttlFor(ctx, view.status));
  } catch (err) {
    ctx.log.warn({ err, initId: view.init_id }, 'could not cache a process state');
    await ctx.cache.delete(cacheKey(view.init_id)).catch(() => undefined);
  }
}

function notFound(): NotFound {
  return new NotFound('No such process: call /api/v1/initiate-process for an init_id.', 'process_not_found');
}

export async function initiateProcess(ctx: Context, principal: Principal): Promise<{ init_id: string }> {
  const now = isoNow(ctx.clock);
  const row: repo.ProcessRow = {
    init_id: newId(),
    owner_id: principal.userId,
    status: 'initiated',
    source_file_id: null,
    target_file_id: null,
    prompt: null,
    job_id: null,
    result_file_id: null,
    error: null,
    created_at: now,
    updated_at: now,
  };
  // Stored only while the account is there: an account deleted while this request ran leaves no process behind (account-hold.ts).
  await ctx.db.kysely.transaction().execute(async (tx) => {
    await holdAccount(ctx.db, tx, principal);
    await repo.insertProcess(tx, row);
  });
  await publish(ctx, viewOf(row));
  return { init_id: row.init_id };
}

/** Starts the edit: the process moves to processing and an `ai_edit` job is queued. */
export async function bookProcess(ctx: Context, principal: Principal, body: BookBody, host: string | undefined) {
  // Never pretend: without a provider nothing is booked and the caller learns what to set.
  if (!ctx.config.openai.apiKey) throw new ServiceUnavailable(NO_KEY_MESSAGE, 'provider_not_configured');
  const row = ID.test(body.init_id) ? await repo.findProcess(ctx.db.kysely, body.init_id) : undefined;
  if (!row || row.owner_id !== principal.userId) throw notFound();
  if (row.status === 'processing') throw new Conflict('This process is already processing; poll /api/v1/process/status.', 'process_busy');
  if (row.status === 'completed') throw new Conflict('This process is completed; initiate a new one for another edit.', 'process_completed');
  const source = await ownUpload(ctx, principal, body.source_url, 'source_url', host);
  const target = await ownUpload(ctx, principal, body.target_url, 'target_url', host);

  // The booking, its job and the job's id on the process commit together: a failure, or a process that
  // dies between them, never leaves a process processing with no job to finish it.
  const dispatch = await ctx.db.kysely.transaction().execute(async (tx) => {
    // The retention sweep may be deleting an old upload right now: held here, it is either gone (422) or kept (retention.ts).
    const held = await repo.holdFiles(tx, ctx.db.dialect, [source.file_id, target.file_id]);
    if (!held.includes(source.file_id)) throw notYourUpload('source_url');
    if (!held.includes(target.file_id)) throw notYourUpload('target_url');
    const booked = await repo.bookProcess(tx, row.init_id, principal.userId, ['initiated', 'failed'], {
      source_file_id: source.file_id,
      target_file_id: target.file_id,
      prompt: body.prompt,
      updated_at: isoNow(ctx.clock),
    });
    if (!booked) throw new Conflict('This process was booked by another request just now.', 'process_busy');
    const input: AiEditJobInput = { init_id: row.init_id };
    const { job, dispatch: start } = await ctx.jobs.enqueueWithin(tx, AI_EDIT_KIND, input, { userId: principal.userId });
    await repo.setJobId(tx, row.init_id, job.job_id);
    return start;
  });
  await dispatch();
  await publish(ctx, { init_id: row.init_id, owner_id: principal.userId, status: 'processing' });
  return { init_id: row.init_id, status: 'processing' as const };
}

/**
 * The row's state; a processing row whose job the job system has already
 * failed (a timeout, an interrupted runner) is failed here too, with the
 * job's reason, and so is one whose job is gone (its row pruned past
 * JOB_RETENTION_DAYS): nothing can finish it any more.
 */
async function loadView(ctx: Context, initId: string): Promise<ProcessView | undefined> {
  const row = await repo.findProcess(ctx.db.kysely, initId);
  if (!row) return undefined;
  if (row.status === 'processing' && row.job_id) {
    const job = await ctx.jobs.get(row.job_id);
    if (!job || job.status === 'failed' || job.status === 'cancelled') {
      const error = job ? (job.error?.detail ?? 'The edit failed.') : 'The edit\'s job is gone, so it will not finish; book the process again.';
      await repo.finishProcess(ctx.db.kysely, initId, { status: 'failed', result_file_id: null, error, updated_at: isoNow(ctx.clock) });
      return { init_id: initId, owner_id: row.owner_id, status: 'failed', error };
    }
  }
  return viewOf(row);
}

/** The status of the caller's process; a cache hit costs no query. */
export async function processStatus(ctx: Context, principal: Principal, initId: string): Promise<StatusAnswer> {
  if (!ID.test(initId)) throw notFound();
  let view: ProcessView | undefined;
  try {
    view = await ctx.cache.get<ProcessView>(cacheKey(initId));
  } catch (err) {
    ctx.log.warn({ err }, 'process cache unavailable; reading the database');
  }
  if (view === undefined) {
    view = await loadView(ctx, initId);
    if (view) await publish(ctx, view);
  }
  if (!view || view.owner_id !== principal.userId) throw notFound();
  const { owner_id: _owner, ...answer } = view;
  return answer;
}

/** Marks a processing process failed with `error` (the job gave up) and publishes it. */
export async function failProcess(ctx: Context, initId: string, ownerId: string, error: string): Promise<void> {
  const changed = await repo.finishProcess(ctx.db.kysely, initId, { status: 'failed', result_file_id: null, error, updated_at: isoNow(ctx.clock) });
  if (changed) await publish(ctx, { init_id: initId, owner_id: ownerId, status: 'failed', error });
}

/**
 * Records a finished edit: the result's row and the process's new state in
 * one transaction (`storeImage` writes the blobs before and removes them if
 * this throws). Throws when the process is no longer processing.
 */
export async function commitResult(ctx: Context, initId: string, file: repo.FileRow): Promise<void> {
  await ctx.db.kysely.transaction().execute(async (tx) => {
    await repo.insertFile(tx, file);
    const done = await repo.finishProcess(tx, initId, { status: 'completed', result_file_id: file.file_id, error: null, updated_at: file.created_at });
    // Deleted with its account, or failed meanwhile: the result has no process to go to.
    if (!done) throw new PermanentJobError('process_not_processing', 'The process stopped processing before its result arrived.');
  });
}

export async function publishCompleted(ctx: Context, initId: string, ownerId: string, resultFileId: string): Promise<void> {
  await publish(ctx, { init_id: initId, owner_id: ownerId, status: 'completed', result_url: fileUrl(resultFileId) });
}

/** Account deletion: the user's processes, uploads and results, rows first, then cache entries and blobs. */
export async function deleteUserAiEdits(ctx: Context, userId: string): Promise<void> {
  const { kysely } = ctx.db;
  const fileIds = await repo.fileIdsOwnedBy(kysely, userId);
  const processIds = await repo.processIdsOwnedBy(kysely, userId);
  await kysely.transaction().execute((tx) => repo.deleteAllOf(tx, userId));
  for (const id of processIds) await ctx.cache.delete(cacheKey(id)).catch((err: unknown) => ctx.log.warn({ err }, 'cache delete failed'));
  await deleteBlobsOf(ctx, fileIds);
}
