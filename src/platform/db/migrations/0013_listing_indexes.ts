import { type Kysely } from 'kysely';

// Listings that a shop's years of data made slow (a data-volume audit: 200000
// users, 100000 jobs): the admin's user pages are in creation order, and the
// job listing filtered by status or type is newest first. Without these each
// page read and sorted every matching row (SQLite: SCAN users and a temporary
// B-tree for the ORDER BY, 50 ms a page; jobs by status, 207 ms).
export async function up(db: Kysely<unknown>): Promise<void> {
  await db.schema.createIndex('users_created').on('users').columns(['created_at', 'id']).execute();
  await db.schema.createIndex('jobs_status_created').on('jobs').columns(['status', 'created_at', 'job_id']).execute();
  await db.schema.createIndex('jobs_type_created').on('jobs').columns(['type', 'created_at', 'job_id']).execute();
}

export async function down(db: Kysely<unknown>): Promise<void> {
  await db.schema.dropIndex('jobs_type_created').execute();
  await db.schema.dropIndex('jobs_status_created').execute();
  await db.schema.dropIndex('users_created').execute();
}
