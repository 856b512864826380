import { type Kysely } from 'kysely';

// AI edits expire (docs/ai-edits.md, "What is kept, and for how long"): every
// hour each process deletes the processes never booked after a day and, with
// AI_EDIT_RETENTION_DAYS, finished processes and unused uploads past it.
// These indexes find those rows, and whether a process still uses an upload
// as source or target, without a scan of every process and file ever made.
export async function up(db: Kysely<unknown>): Promise<void> {
  await db.schema.createIndex('ai_processes_status_updated').on('ai_processes').columns(['status', 'updated_at']).execute();
  await db.schema.createIndex('ai_processes_source').on('ai_processes').column('source_file_id').execute();
  await db.schema.createIndex('ai_processes_target').on('ai_processes').column('target_file_id').execute();
  await db.schema.createIndex('ai_files_kind_created').on('ai_files').columns(['kind', 'created_at']).execute();
}

export async function down(db: Kysely<unknown>): Promise<void> {
  await db.schema.dropIndex('ai_files_kind_created').execute();
  await db.schema.dropIndex('ai_processes_target').execute();
  await db.schema.dropIndex('ai_processes_source').execute();
  await db.schema.dropIndex('ai_processes_status_updated').execute();
}
