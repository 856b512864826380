import { type Kysely } from 'kysely';

// Unpaid orders expire (docs/shop.md, "Unpaid orders give their stock
// back"): every minute each process asks for the pending orders untouched
// since the hold began, oldest first. This index answers that from the few
// pending rows instead of a scan of every order ever placed.
export async function up(db: Kysely<unknown>): Promise<void> {
  await db.schema.createIndex('orders_status_updated').on('orders').columns(['status', 'updated_at', 'order_id']).execute();
}

export async function down(db: Kysely<unknown>): Promise<void> {
  await db.schema.dropIndex('orders_status_updated').execute();
}
