/**
 * Orders (docs/shop.md): a buyer orders products; the server prices them
 * from the products as they are now and reserves their stock in the same
 * transaction, so an order exists exactly when its stock was taken. Two
 * buyers racing for the last item: one order, one 409 `out_of_stock`.
 * Cancelling (before shipping) gives the stock back.
 */
import type { Kysely, Transaction } from 'kysely';
import { isoNow } from '../../clock.js';
import type { Context } from '../../context.js';
import { Conflict, Forbidden, NotFound, ValidationFailed } from '../../errors.js';
import { newId } from '../../ids.js';
import type { Principal } from '../../auth/principal.js';
import type { Database } from '../../platform/db/schema.js';
import { decodePosition, encodePosition } from '../../platform/http/cursor.js';
import { customOrderLinkable } from '../custom-orders/service.js';
import { formatMoney } from './money.js';
import { canMove, isOrderStatus, type OrderStatus } from './order-status.js';
import * as repo from './repo.js';
import { MAX_LINE_QUANTITY, type OrderBody, type OrderListQuery } from './schemas.js';

export interface OrderView {
  id: string;
  user_id: string;
  items: Array<{ product_id: string; name: string; unit_price: string; quantity: number }>;
  total_amount: string;
  currency: string;
  status: OrderStatus;
  stripe_payment_intent_id: string | null;
  custom_order_id: string | null;
  created_at: string;
  updated_at: string;
}

function orderView(order: repo.OrderRow, items: readonly repo.OrderItemRow[]): OrderView {
  return {
    id: order.order_id,
    user_id: order.user_id,
    items: items.map((i) => ({ product_id: i.product_id, name: i.name, unit_price: formatMoney(i.unit_price_minor, order.currency), quantity: Number(i.quantity) })),
    total_amount: formatMoney(order.total_minor, order.currency),
    currency: order.currency,
    status: isOrderStatus(order.status) ? order.status : 'pending',
    stripe_payment_intent_id: order.stripe_payment_intent_id,
    custom_order_id: order.custom_order_id,
    created_at: order.created_at,
    updated_at: order.updated_at,
  };
}

type Q = Kysely<Database> | Transaction<Database>;

const orderNotFound = (): NotFound => new NotFound('No such order.', 'order_not_found');

/** One line per product, in the order first named; quantities of a product named twice add up. */
function mergedLines(items: OrderBody['items']): Array<{ productId: string; quantity: number; field: string }> {
  const lines = new Map<string, { productId: string; quantity: number; field: string }>();
  items.forEach((item, i) => {
    const line = lines.get(item.product_id);
    if (line) line.quantity += item.quantity;
    else lines.set(item.product_id, { productId: item.product_id, quantity: item.quantity, field: `body.items.${i}.product_id` });
    // The limit is per product: splitting a quantity over several lines does not get past it.
    if ((line?.quantity ?? item.quantity) > MAX_LINE_QUANTITY) {
      throw new ValidationFailed(
        `One order takes at most ${MAX_LINE_QUANTITY} of a product; the lines naming ${item.product_id} add up to more.`,
        [{ field: `body.items.${i}.quantity`, message: `adds up to more than ${MAX_LINE_QUANTITY} of this product` }],
      );
    }
  });
  return [...lines.values()];
}

export class OrderService {
  /** `onCancelled` runs once an order's cancel is committed (payments cancel its open intent); it must not throw. */
  constructor(
    private readonly ctx: Context,
    private readonly onCancelled: (orderId: string) => Promise<void> = async () => undefined,
  ) {}

  async create(principal: Principal, body: OrderBody): Promise<OrderView> {
    const { ctx } = this;
    const customOrderId = body.custom_order_id ?? null;
    // Linking someone else's custom order is refused as if it did not exist; an admin may link anyone's, but only one that exists.
    if (customOrderId !== null && !(await customOrderLinkable(ctx, principal, customOrderId))) {
      throw new NotFound('No such custom order.', 'custom_order_not_found');
    }
    const lines = mergedLines(body.items);
    const order = await ctx.db.kysely.transaction().execute(async (tx) => {
      const priced: Array<{ row: repo.ProductRow; quantity: number }> = [];
      // Stock is taken in product-id order, so two orders of the same products never wait on each other in a circle (PostgreSQL).
      for (const line of [...lines].sort((a, b) => (a.productId < b.productId ? -1 : 1))) {
        const notForSale = () => new ValidationFailed(`There is no product ${line.productId} for sale.`, [{ field: line.field, message: 'is not a product for sale' }], 'unknown_product');
        const product = await repo.findProduct(tx, line.productId);
        if (!product || product.is_active !== 1) throw notForSale();
        if (!(await repo.takeStock(tx, line.productId, line.quantity))) {
          // Deleted while this order waited on its row (PostgreSQL): said as such, not as a lack of stock.
          const now = await repo.findProduct(tx, line.productId);
          if (!now || now.is_active !== 1) throw notForSale();
          throw new Conflict(`Not enough of "${product.name}" in stock for ${line.quantity}.`, 'out_of_stock');
        }
        priced.push({ row: product, quantity: line.quantity });
      }
      const currencies = new Set(priced.map((p) => p.row.currency));
      if (currencies.size > 1) {
        throw new ValidationFailed(`One order is paid in one currency; these products are priced in ${[...currencies].join(' and ')}.`, [{ field: 'body.items', message: 'mixes currencies' }], 'mixed_currencies');
      }
      const byId = new Map(priced.map((p) => [p.row.product_id, p.row]));
      const orderId = newId();
      const items: repo.OrderItemRow[] = lines.map((line, seq) => {
        const product = byId.get(line.productId) as repo.ProductRow;
        return { order_id: orderId, seq, product_id: line.productId, name: product.name, unit_price_minor: Number(product.price_minor), quantity: line.quantity };
      });
      const total = items.reduce((sum, i) => sum + Number(i.unit_price_minor) * i.quantity, 0);
      if (!Number.isSafeInteger(total)) throw new ValidationFailed('The order\'s total is too large.', [{ field: 'body.items', message: 'total too large' }], 'total_too_large');
      const now = isoNow(ctx.clock);
      const row: repo.OrderRow = {
        order_id: orderId,
        user_id: principal.userId,
        total_minor: total,
        currency: (priced[0] as (typeof priced)[number]).row.currency,
        status: 'pending',
        stripe_payment_intent_id: null,
        custom_order_id: customOrderId,
        created_at: now,
        updated_at: now,
      };
      await repo.insertOrder(tx, row, items);
      return orderView(row, items);
    });
    return order;
  }

  /** An order its owner or an admin may see; 404 for everyone else. */
  async get(principal: Principal, orderId: string): Promise<OrderView> {
    const q = this.ctx.db.kysely;
    const order = await repo.findOrder(q, orderId);
    if (!order || (!principal.isAdmin && order.user_id !== principal.userId)) throw orderNotFound();
    return orderView(order, await repo.itemsOf(q, [orderId]));
  }

  async list(principal: Principal, query: OrderListQuery): Promise<{ orders: OrderView[]; next_cursor: string | null }> {
    if (query.all && !principal.isAdmin) throw new Forbidden('Only admins may list every customer\'s orders.', 'admin_required');
    const q = this.ctx.db.kysely;
    const after = query.cursor === undefined ? undefined : decodePosition(query.cursor);
    const rows = await repo.listOrders(q, query.all ? undefined : principal.userId, query.limit + 1, after);
    const page = rows.slice(0, query.limit);
    const items = await repo.itemsOf(q, page.map((o) => o.order_id));
    const byOrder = new Map<string, repo.OrderItemRow[]>();
    for (const item of items) byOrder.set(item.order_id, [...(byOrder.get(item.order_id) ?? []), item]);
    const last = page[page.length - 1];
    return {
      orders: page.map((o) => orderView(o, byOrder.get(o.order_id) ?? [])),
      next_cursor: rows.length > query.limit && last ? encodePosition({ createdAt: last.created_at, id: last.order_id }) : null,
    };
  }

  /** An admin moves an order along its life; cancelling returns its stock. Any other move: 409. */
  async setStatus(orderId: string, status: OrderStatus): Promise<OrderView> {
    const { ctx } = this;
    const view = await ctx.db.kysely.transaction().execute(async (tx) => {
      const order = await repo.lockOrder(ctx.db, tx, orderId);
      if (!order) throw orderNotFound();
      const from = order.status;
      if (!isOrderStatus(from) || !canMove(from, status)) {
        throw new Conflict(`An order that is ${from} cannot become ${status}.`, 'invalid_status_transition');
      }
      const items = await repo.itemsOf(tx, [orderId]);
      if (status === 'cancelled') await returnStockOf(tx, items);
      const now = isoNow(ctx.clock);
      await repo.setOrderStatus(tx, orderId, status, now);
      return orderView({ ...order, status, updated_at: now }, items);
    });
    if (status === 'cancelled') await this.onCancelled(orderId);
    return view;
  }

  /** Pending orders to pay whose last change is before `before`, oldest first: `limit` of them after `after`. */
  async stalePending(before: string, limit: number, after?: repo.StaleOrder): Promise<repo.StaleOrder[]> {
    return repo.stalePendingOrders(this.ctx.db.kysely, before, limit, after);
  }

  /**
   * Cancels a pending order whose hold ran out, as an admin's cancel does
   * (stock back, then `onCancelled`). Decided under the order row's lock:
   * false, and nothing changed, when it is no longer pending or was changed
   * at or after `before` (an intent named meanwhile restarts the hold).
   */
  async expire(orderId: string, before: string): Promise<boolean> {
    const { ctx } = this;
    const expired = await ctx.db.kysely.transaction().execute(async (tx) => {
      const order = await repo.lockOrder(ctx.db, tx, orderId);
      if (!order || order.status !== 'pending' || order.updated_at >= before) return false;
      await returnStockOf(tx, await repo.itemsOf(tx, [orderId]));
      await repo.setOrderStatus(tx, orderId, 'cancelled', isoNow(ctx.clock));
      return true;
    });
    if (expired) await this.onCancelled(orderId);
    return expired;
  }
}

/** A cancelled order's lines go back to stock, in product-id order like the reservation (no circular waits on PostgreSQL). */
async function returnStockOf(tx: Q, items: readonly repo.OrderItemRow[]): Promise<void> {
  for (const item of [...items].sort((a, b) => (a.product_id < b.product_id ? -1 : 1))) await repo.returnStock(tx, item.product_id, Number(item.quantity));
}

// What payments (modules/payments) need of an order: plain reads and writes, in the caller's transaction when it passes one.

/** The order if `userId` placed it; anyone else's is as good as missing. */
export async function findOrderOfBuyer(q: Q, userId: string, orderId: string): Promise<repo.OrderRow | undefined> {
  const order = await repo.findOrder(q, orderId);
  return order?.user_id === userId ? order : undefined;
}

/** The order's status now; undefined when there is no such order. */
export async function orderStatusOf(q: Q, orderId: string): Promise<string | undefined> {
  return (await repo.findOrder(q, orderId))?.status;
}

/**
 * Names the intent that pays the order: its `stripe_payment_intent_id` from
 * now on. False, and nothing written, when the order is no longer pending
 * (cancelled while Stripe was making the intent): the row's own status
 * decides, under the lock the update takes.
 */
export async function recordPaymentIntent(q: Q, orderId: string, intentId: string, now: string): Promise<boolean> {
  return repo.setPaymentIntent(q, orderId, intentId, now);
}
