import { type Kysely } from 'kysely';

// Housekeeping (docs/operations.md, "What grows, and what removes it"): every
// hour each process deletes the sessions that ended a day ago and the job
// rows past JOB_RETENTION_DAYS. These indexes find those few rows without a
// scan of every refresh token or job ever written.
export async function up(db: Kysely<unknown>): Promise<void> {
  await db.schema.createIndex('refresh_tokens_expires').on('refresh_tokens').columns(['expires_at', 'family_id']).execute();
  await db.schema.createIndex('jobs_finished').on('jobs').columns(['finished_at', 'job_id']).execute();
}

export async function down(db: Kysely<unknown>): Promise<void> {
  await db.schema.dropIndex('jobs_finished').execute();
  await db.schema.dropIndex('refresh_tokens_expires').execute();
}
