/**
 * An order's life: pending -> confirmed -> shipped -> delivered, or
 * cancelled from pending or confirmed (before it ships; its stock goes back).
 * Any other move is a 409. Payments (modules/payments) confirm a pending
 * order through `confirmPaidOrder`, the same move an admin makes.
 */
import type { Kysely, Transaction } from 'kysely';
import type { Database } from '../../platform/db/schema.js';

export const ORDER_STATUSES = ['pending', 'confirmed', 'shipped', 'delivered', 'cancelled'] as const;
export type OrderStatus = (typeof ORDER_STATUSES)[number];

const NEXT: Record<OrderStatus, readonly OrderStatus[]> = {
  pending: ['confirmed', 'cancelled'],
  confirmed: ['shipped', 'cancelled'],
  shipped: ['delivered'],
  delivered: [],
  cancelled: [],
};

export function isOrderStatus(s: string): s is OrderStatus {
  return (ORDER_STATUSES as readonly string[]).includes(s);
}

export function canMove(from: OrderStatus, to: OrderStatus): boolean {
  return NEXT[from].includes(to);
}

/**
 * A paid order becomes confirmed: only from pending, in one conditional
 * UPDATE, so a payment seen twice (confirm and webhook) confirms once.
 * True when this call made the move.
 */
export async function confirmPaidOrder(db: Kysely<Database> | Transaction<Database>, orderId: string, now: string): Promise<boolean> {
  const result = await db
    .updateTable('orders')
    .set({ status: 'confirmed', updated_at: now })
    .where('order_id', '=', orderId)
    .where('status', '=', 'pending')
    .executeTakeFirst();
  return Number(result.numUpdatedRows) === 1;
}
