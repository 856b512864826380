/**
 * SQL of payments, and of nothing else: orders are the shop's (modules/shop),
 * read and changed through its functions (orders.ts, order-status.ts).
 */
import type { Kysely, Transaction } from 'kysely';
import type { Database, PaymentsTable } from '../../platform/db/schema.js';

export type PaymentRow = PaymentsTable;
type Q = Transaction<Database> | Kysely<Database>;

/** Intent statuses that never change again at Stripe: a row in one of them is never rewritten. */
export const FINAL_STATUSES = ['succeeded', 'canceled'] as const;

export async function findPayment(q: Q, paymentId: string): Promise<PaymentRow | undefined> {
  return q.selectFrom('payments').selectAll().where('payment_id', '=', paymentId).executeTakeFirst();
}

export async function findPaymentByIntent(q: Q, intentId: string): Promise<PaymentRow | undefined> {
  return q.selectFrom('payments').selectAll().where('intent_id', '=', intentId).executeTakeFirst();
}

/** The order's newest payment whose intent can still be paid or has been (not canceled), if any. */
export async function livePaymentOf(q: Q, orderId: string): Promise<PaymentRow | undefined> {
  return q
    .selectFrom('payments')
    .selectAll()
    .where('order_id', '=', orderId)
    .where('status', '!=', 'canceled')
    .orderBy('created_at', 'desc')
    .orderBy('payment_id', 'desc')
    .limit(1)
    .executeTakeFirst();
}

/**
 * How many of the order's intents were canceled. Only those: a payment
 * another request records meanwhile (it is live, not canceled) must not
 * change the count this request builds its idempotency key from.
 */
export async function countCanceledPayments(q: Q, orderId: string): Promise<number> {
  const row = await q
    .selectFrom('payments')
    .select((eb) => eb.fn.countAll<number | string>().as('n'))
    .where('order_id', '=', orderId)
    .where('status', '=', 'canceled')
    .executeTakeFirstOrThrow();
  return Number(row.n);
}

/**
 * Records a payment. An intent already recorded (a concurrent request that
 * got the same intent from Stripe) is left as it is. True when this call
 * inserted the row.
 */
export async function insertPayment(tx: Q, row: PaymentRow): Promise<boolean> {
  const result = await tx.insertInto('payments').values(row).onConflict((oc) => oc.column('intent_id').doNothing()).executeTakeFirst();
  return Number(result.numInsertedOrUpdatedRows ?? 0n) === 1;
}

export type PaymentChanges = Pick<PaymentRow, 'status' | 'last_error_code' | 'last_error_message' | 'updated_at'>;

/** Writes what Stripe now says of the intent, unless the row is already final. True when a row changed. */
export async function updatePayment(tx: Q, paymentId: string, changes: PaymentChanges): Promise<boolean> {
  const result = await tx
    .updateTable('payments')
    .set(changes)
    .where('payment_id', '=', paymentId)
    .where('status', 'not in', FINAL_STATUSES)
    .executeTakeFirst();
  return Number(result.numUpdatedRows) === 1;
}

/** Marks a webhook event as applied. False when it already was: the caller then changes nothing. */
export async function recordEvent(tx: Q, eventId: string, type: string, now: string): Promise<boolean> {
  const result = await tx
    .insertInto('payment_events')
    .values({ event_id: eventId, type, received_at: now })
    .onConflict((oc) => oc.column('event_id').doNothing())
    .executeTakeFirst();
  return Number(result.numInsertedOrUpdatedRows ?? 0n) === 1;
}
