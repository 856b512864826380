import { type Kysely } from 'kysely';

// AI edits (the Pictoora API): the files a client uploads or a job produces, and the processes that tie them together.
export async function up(db: Kysely<unknown>): Promise<void> {
  await db.schema
    .createTable('ai_files')
    .addColumn('file_id', 'text', (c) => c.primaryKey())
    .addColumn('owner_id', 'text', (c) => c.notNull())
    .addColumn('kind', 'text', (c) => c.notNull())
    .addColumn('width', 'integer', (c) => c.notNull())
    .addColumn('height', 'integer', (c) => c.notNull())
    .addColumn('bytes', 'integer', (c) => c.notNull())
    .addColumn('sha256', 'text', (c) => c.notNull())
    .addColumn('variants', 'text', (c) => c.notNull())
    .addColumn('created_at', 'text', (c) => c.notNull())
    .execute();
  await db.schema.createIndex('ai_files_owner').on('ai_files').column('owner_id').execute();

  await db.schema
    .createTable('ai_processes')
    .addColumn('init_id', 'text', (c) => c.primaryKey())
    .addColumn('owner_id', 'text', (c) => c.notNull())
    .addColumn('status', 'text', (c) => c.notNull())
    .addColumn('source_file_id', 'text')
    .addColumn('target_file_id', 'text')
    .addColumn('prompt', 'text')
    .addColumn('job_id', 'text')
    .addColumn('result_file_id', 'text')
    .addColumn('error', 'text')
    .addColumn('created_at', 'text', (c) => c.notNull())
    .addColumn('updated_at', 'text', (c) => c.notNull())
    .execute();
  await db.schema.createIndex('ai_processes_owner').on('ai_processes').column('owner_id').execute();
}

export async function down(db: Kysely<unknown>): Promise<void> {
  await db.schema.dropTable('ai_processes').ifExists().execute();
  await db.schema.dropTable('ai_files').ifExists().execute();
}
