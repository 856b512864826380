/**
 * The status lifecycle of a custom order (docs/custom-orders.md, Rules):
 * pending → in_review → modeling → ready → shipped, or cancelled from any
 * state before shipped. Pure rules, so the service and the tests share them.
 */
import { Conflict } from '../../errors.js';

export const ORDER_STATUSES = ['pending', 'in_review', 'modeling', 'ready', 'shipped', 'cancelled'] as const;
export type OrderStatus = (typeof ORDER_STATUSES)[number];

/** The one forward step each status allows (besides cancelling). */
const NEXT: Readonly<Record<OrderStatus, OrderStatus | null>> = {
  pending: 'in_review',
  in_review: 'modeling',
  modeling: 'ready',
  ready: 'shipped',
  shipped: null,
  cancelled: null,
};

/** Statuses in which the customer may still delete the order. */
const DELETABLE: ReadonlySet<OrderStatus> = new Set(['pending', 'cancelled']);

export interface HistoryEntry {
  status: OrderStatus;
  at: string;
  /** User id of whoever made the change (the customer for `pending`, an admin afterwards). */
  by: string;
}

export function isOrderStatus(value: string): value is OrderStatus {
  return (ORDER_STATUSES as readonly string[]).includes(value);
}

export function canMove(from: OrderStatus, to: OrderStatus): boolean {
  if (to === 'cancelled') return from !== 'shipped' && from !== 'cancelled';
  return NEXT[from] === to;
}

/** Throws 409 `invalid_transition` unless `from → to` is a step of the lifecycle. */
export function assertMove(from: OrderStatus, to: OrderStatus): void {
  if (!canMove(from, to)) {
    const allowed = [NEXT[from], from === 'shipped' || from === 'cancelled' ? null : 'cancelled'].filter((s) => s !== null);
    const hint = allowed.length ? `; from ${from} it may become ${allowed.join(' or ')}` : `; ${from} is final`;
    throw new Conflict(`An order cannot go from ${from} to ${to}${hint}.`, 'invalid_transition');
  }
}

/** Throws 409 `order_not_deletable` unless the order may still be deleted. */
export function assertDeletable(status: OrderStatus): void {
  if (!DELETABLE.has(status)) {
    throw new Conflict(`An order can be deleted only while pending or cancelled; this one is ${status}.`, 'order_not_deletable');
  }
}
