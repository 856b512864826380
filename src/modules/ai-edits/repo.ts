/**
 * SQL for AI-edit files and processes. A process changes state only through
 * conditional updates (`where status in …`), so two requests or a request
 * and a job never both win a transition.
 */
import type { Kysely, Transaction } from 'kysely';
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
