import { type Kysely } from 'kysely';

// Payments of shop orders through Stripe (modules/payments, docs/payments.md).
// One row per PaymentIntent Kiln made; its status mirrors the intent's. The
// client secret is not kept: Stripe hands it out again on every read.
export async function up(db: Kysely<unknown>): Promise<void> {
  await db.schema
    .createTable('payments')
    .addColumn('payment_id', 'text', (c) => c.primaryKey())
    // An order that goes takes its payments with it (the record stays at Stripe).
    .addColumn('order_id', 'text', (c) => c.notNull().references('orders.order_id').onDelete('cascade'))
    .addColumn('user_id', 'text', (c) => c.notNull())
    // Unique: two requests that got the same intent back (Stripe's idempotency key) record it once.
    .addColumn('intent_id', 'text', (c) => c.notNull().unique())
    .addColumn('amount_minor', 'bigint', (c) => c.notNull())
    .addColumn('currency', 'text', (c) => c.notNull())
    .addColumn('status', 'text', (c) => c.notNull())
    // Why the last attempt failed (a declined card), as Stripe said it; cleared by a success.
    .addColumn('last_error_code', 'text')
    .addColumn('last_error_message', 'text')
    .addColumn('created_at', 'text', (c) => c.notNull())
    .addColumn('updated_at', 'text', (c) => c.notNull())
    .execute();
  // "Does this order have a live payment?" and "how many attempts so far?"
  await db.schema.createIndex('payments_order').on('payments').columns(['order_id', 'created_at']).execute();

  // Webhook events applied, inserted in the transaction that applies them.
  await db.schema
    .createTable('payment_events')
    .addColumn('event_id', 'text', (c) => c.primaryKey())
    .addColumn('type', 'text', (c) => c.notNull())
    .addColumn('received_at', 'text', (c) => c.notNull())
    .execute();
}

export async function down(db: Kysely<unknown>): Promise<void> {
  await db.schema.dropTable('payment_events').ifExists().execute();
  await db.schema.dropTable('payments').ifExists().execute();
}
