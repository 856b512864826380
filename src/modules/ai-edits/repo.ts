/**
 * SQL for AI-edit files and processes. A process changes state only through
 * conditional updates (`where status in …`), so two requests or a request
 * and a job never both win a transition.
 */
import type { Expression, ExpressionBuilder, Kysely, SqlBool, Transaction } from 'kysely';
import { lockAgainstDelete, lockForUpdate, type DialectName } from '../../platform/db/index.js';
import type { AiFilesTable, AiProcessesTable, Database } from '../../platform/db/schema.js';

export type FileRow = AiFilesTable;
export type ProcessRow = AiProcessesTable;
export type ProcessState = ProcessRow['status'];
type Tx = Transaction<Database> | Kysely<Database>;

export async function insertFile(db: Tx, row: FileRow): Promise<void> {
  await db.insertInto('ai_files').values(row).execute();
}

export async function findFile(db: Tx, fileId: string): Promise<FileRow | undefined> {
  return db.selectFrom('ai_files').selectAll().where('file_id', '=', fileId).executeTakeFirst();
}

export async function insertProcess(db: Tx, row: ProcessRow): Promise<void> {
  await db.insertInto('ai_processes').values(row).execute();
}

export async function findProcess(db: Tx, initId: string): Promise<ProcessRow | undefined> {
  return db.selectFrom('ai_processes').selectAll().where('init_id', '=', initId).executeTakeFirst();
}

/**
 * Moves the caller's process to `processing` with its inputs, when it is in
 * one of `from`. False when it is not theirs, missing or in another state.
 */
export async function bookProcess(
  db: Tx,
  initId: string,
  ownerId: string,
  from: readonly ProcessState[],
  changes: Pick<ProcessRow, 'source_file_id' | 'target_file_id' | 'prompt' | 'updated_at'>,
): Promise<boolean> {
  const result = await db
    .updateTable('ai_processes')
    .set({ ...changes, status: 'processing', job_id: null, result_file_id: null, error: null })
    .where('init_id', '=', initId)
    .where('owner_id', '=', ownerId)
    .where('status', 'in', [...from])
    .executeTakeFirst();
  return result.numUpdatedRows > 0n;
}

export async function setJobId(db: Tx, initId: string, jobId: string): Promise<void> {
  await db.updateTable('ai_processes').set({ job_id: jobId }).where('init_id', '=', initId).execute();
}

/** Ends a processing process (completed or failed); false when it was not processing any more. */
export async function finishProcess(
  db: Tx,
  initId: string,
  changes: Pick<ProcessRow, 'status' | 'result_file_id' | 'error' | 'updated_at'>,
): Promise<boolean> {
  const result = await db
    .updateTable('ai_processes')
    .set(changes)
    .where('init_id', '=', initId)
    .where('status', '=', 'processing')
    .executeTakeFirst();
  return result.numUpdatedRows > 0n;
}

export async function fileIdsOwnedBy(db: Tx, ownerId: string): Promise<string[]> {
  const rows = await db.selectFrom('ai_files').select('file_id').where('owner_id', '=', ownerId).execute();
  return rows.map((r) => r.file_id);
}

export async function processIdsOwnedBy(db: Tx, ownerId: string): Promise<string[]> {
  const rows = await db.selectFrom('ai_processes').select('init_id').where('owner_id', '=', ownerId).execute();
  return rows.map((r) => r.init_id);
}

export async function deleteAllOf(db: Tx, ownerId: string): Promise<void> {
  await db.deleteFrom('ai_processes').where('owner_id', '=', ownerId).execute();
  await db.deleteFrom('ai_files').where('owner_id', '=', ownerId).execute();
}

/**
 * Of `fileIds`, the ones still there, held against a delete until the
 * transaction ends (PostgreSQL; SQLite transactions run one at a time): a
 * booking and the retention sweep's unusedUploads never both win.
 */
export async function holdFiles(db: Tx, dialect: DialectName, fileIds: readonly string[]): Promise<string[]> {
  const rows = await lockAgainstDelete(dialect, db.selectFrom('ai_files').select('file_id').where('file_id', 'in', [...fileIds])).execute();
  return rows.map((r) => r.file_id);
}

/**
 * Processes a sweep deletes: in one of `statuses` and last changed before
 * `before`. An initiated process is never changed, so for it that is when it was made.
 */
export interface ExpiredProcesses {
  statuses: readonly ProcessState[];
  before: string;
}

export type ProcessRef = Pick<ProcessRow, 'init_id' | 'result_file_id'>;

export async function expiredProcesses(db: Tx, expired: ExpiredProcesses, limit: number): Promise<ProcessRef[]> {
  return db
    .selectFrom('ai_processes')
    .select(['init_id', 'result_file_id'])
    .where('status', 'in', [...expired.statuses])
    .where('updated_at', '<', expired.before)
    .limit(limit)
    .execute();
}

/**
 * Deletes those of `initIds` that are still expired (a booking may have
 * moved one on since it was read), with their results' rows; returns the
 * processes it deleted, for their cache entries and result blobs.
 */
export async function deleteExpiredProcesses(db: Tx, expired: ExpiredProcesses, initIds: readonly string[]): Promise<ProcessRef[]> {
  if (initIds.length === 0) return [];
  const deleted = await db
    .deleteFrom('ai_processes')
    .where('init_id', 'in', [...initIds])
    .where('status', 'in', [...expired.statuses])
    .where('updated_at', '<', expired.before)
    .returning(['init_id', 'result_file_id'])
    .execute();
  const results = deleted.flatMap((p) => (p.result_file_id ? [p.result_file_id] : []));
  if (results.length > 0) await db.deleteFrom('ai_files').where('file_id', 'in', results).where('kind', '=', 'result').execute();
  return deleted;
}

/**
 * Up to `limit` uploads made before `before` that no process references,
 * locked for the delete that follows in the same transaction (PostgreSQL): a
 * booking holding one (holdFiles) commits first, and the delete, a statement
 * of its own, then sees its process.
 */
export async function unusedUploads(db: Tx, dialect: DialectName, before: string, limit: number): Promise<string[]> {
  const query = db.selectFrom('ai_files').select('file_id').where((eb) => isUnusedUpload(eb, before)).limit(limit);
  return (await lockForUpdate(dialect, query).execute()).map((r) => r.file_id);
}

/** Deletes those of `fileIds` that are still unused uploads made before `before`; returns the ones it deleted. */
export async function deleteUnusedUploads(db: Tx, before: string, fileIds: readonly string[]): Promise<string[]> {
  if (fileIds.length === 0) return [];
  const rows = await db
    .deleteFrom('ai_files')
    .where('file_id', 'in', [...fileIds])
    .where((eb) => isUnusedUpload(eb, before))
    .returning('file_id')
    .execute();
  return rows.map((r) => r.file_id);
}

/** An upload made before `before` that is neither side of any process (two clauses, so each can use its index). */
function isUnusedUpload(eb: ExpressionBuilder<Database, 'ai_files'>, before: string): Expression<SqlBool> {
  const usedAs = (side: 'source_file_id' | 'target_file_id') =>
    eb.exists(eb.selectFrom('ai_processes').select('ai_processes.init_id').whereRef(`ai_processes.${side}`, '=', 'ai_files.file_id'));
  return eb.and([eb('ai_files.kind', '=', 'upload'), eb('ai_files.created_at', '<', before), eb.not(usedAs('source_file_id')), eb.not(usedAs('target_file_id'))]);
}
