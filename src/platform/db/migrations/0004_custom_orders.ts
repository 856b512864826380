import { type Kysely } from 'kysely';

// Custom orders (docs/custom-orders.md): one row per order, one per uploaded photo.
export async function up(db: Kysely<unknown>): Promise<void> {
  await db.schema
    .createTable('custom_orders')
    .addColumn('order_id', 'text', (c) => c.primaryKey())
    .addColumn('user_id', 'text', (c) => c.notNull())
    .addColumn('pet_name', 'text')
    .addColumn('pet_type', 'text')
    .addColumn('notes', 'text')
    .addColumn('status', 'text', (c) => c.notNull())
    .addColumn('history', 'text', (c) => c.notNull())
    .addColumn('created_at', 'text', (c) => c.notNull())
    .addColumn('updated_at', 'text', (c) => c.notNull())
    .execute();
  // Newest-first listings: a customer's own, every order (admin), every order of one status (admin).
  await db.schema.createIndex('custom_orders_user_created').on('custom_orders').columns(['user_id', 'created_at', 'order_id']).execute();
  await db.schema.createIndex('custom_orders_created').on('custom_orders').columns(['created_at', 'order_id']).execute();
  await db.schema.createIndex('custom_orders_status_created').on('custom_orders').columns(['status', 'created_at', 'order_id']).execute();

  await db.schema
    .createTable('custom_order_files')
    .addColumn('file_id', 'text', (c) => c.primaryKey())
    .addColumn('order_id', 'text', (c) => c.notNull().references('custom_orders.order_id').onDelete('cascade'))
    .addColumn('seq', 'integer', (c) => c.notNull())
    .addColumn('original_filename', 'text', (c) => c.notNull())
    .addColumn('stored_filename', 'text', (c) => c.notNull())
    .addColumn('content_type', 'text', (c) => c.notNull())
    .addColumn('bytes', 'integer', (c) => c.notNull())
    .addColumn('width', 'integer', (c) => c.notNull())
    .addColumn('height', 'integer', (c) => c.notNull())
    .addColumn('sha256', 'text', (c) => c.notNull())
    .addColumn('variants', 'text', (c) => c.notNull())
    .addColumn('quality', 'text', (c) => c.notNull())
    .addColumn('created_at', 'text', (c) => c.notNull())
    .execute();
  await db.schema.createIndex('custom_order_files_order_seq').on('custom_order_files').columns(['order_id', 'seq']).unique().execute();
}

export async function down(db: Kysely<unknown>): Promise<void> {
  await db.schema.dropTable('custom_order_files').ifExists().execute();
  await db.schema.dropTable('custom_orders').ifExists().execute();
}
