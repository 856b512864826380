/**
 * SQL of the shop: products, their pictures, orders and their lines. Stock
 * is a column of the product row and changes only through the conditional
 * UPDATEs below, inside the transaction that writes the order: two buyers
 * racing for the last item cannot both see it there.
 */
import { sql, type Insertable, type Kysely, type Transaction } from 'kysely';
import { lockForUpdate, type Db } from '../../platform/db/index.js';
import type { Position } from '../../platform/http/cursor.js';
import type { Database, OrderItemsTable, OrdersTable, ProductsTable, ShopProductImagesTable } from '../../platform/db/schema.js';

export type ProductRow = ProductsTable;
export type ProductImageRow = ShopProductImagesTable;
export type OrderRow = OrdersTable;
export type OrderItemRow = OrderItemsTable;
type Q = Transaction<Database> | Kysely<Database>;

/** Where a newest-first page starts: after the row with this (created_at, id). */
export type PageAfter = Position;

// ---- products

export async function insertProduct(q: Q, row: ProductRow): Promise<void> {
  await q.insertInto('products').values(row).execute();
}

export async function findProduct(q: Q, productId: string): Promise<ProductRow | undefined> {
  return q.selectFrom('products').selectAll().where('product_id', '=', productId).executeTakeFirst();
}

export async function lockProduct(db: Db, tx: Q, productId: string): Promise<ProductRow | undefined> {
  return lockForUpdate(db.dialect, tx.selectFrom('products').selectAll().where('product_id', '=', productId)).executeTakeFirst();
}

export async function updateProduct(q: Q, productId: string, changes: Partial<Omit<ProductRow, 'product_id' | 'created_at'>>): Promise<void> {
  await q.updateTable('products').set(changes).where('product_id', '=', productId).execute();
}

export async function deleteProduct(q: Q, productId: string): Promise<void> {
  await q.deleteFrom('shop_product_images').where('product_id', '=', productId).execute();
  await q.deleteFrom('products').where('product_id', '=', productId).execute();
}

export async function isOrdered(q: Q, productId: string): Promise<boolean> {
  const row = await q.selectFrom('order_items').select('product_id').where('product_id', '=', productId).limit(1).executeTakeFirst();
  return row !== undefined;
}

export interface ProductFilter {
  activeOnly: boolean;
  category?: string;
  /** Matched case-insensitively anywhere in the name or the description. */
  text?: string;
}

/** `%`, `_` and the escape itself taken literally in a LIKE pattern. */
function likePattern(text: string): string {
  return `%${text.toLowerCase().replace(/[\\%_]/g, (c) => `\\${c}`)}%`;
}

/** Newest first; `limit` rows after `after`. */
export async function listProducts(q: Q, filter: ProductFilter, limit: number, after?: PageAfter): Promise<ProductRow[]> {
  let query = q.selectFrom('products').selectAll().orderBy('created_at', 'desc').orderBy('product_id', 'desc').limit(limit);
  if (filter.activeOnly) query = query.where('is_active', '=', 1);
  if (filter.category !== undefined) query = query.where('category', '=', filter.category);
  if (filter.text !== undefined) {
    const pattern = likePattern(filter.text);
    query = query.where((eb) =>
      eb.or([
        eb(eb.fn('lower', ['name']), 'like', sql<string>`${pattern} escape '\\'`),
        eb(eb.fn('lower', ['description']), 'like', sql<string>`${pattern} escape '\\'`),
      ]),
    );
  }
  if (after) {
    query = query.where((eb) =>
      eb.or([eb('created_at', '<', after.createdAt), eb.and([eb('created_at', '=', after.createdAt), eb('product_id', '<', after.id)])]),
    );
  }
  return query.execute();
}

/**
 * Takes `quantity` from the product's stock if it is active and has that
 * many: one statement, so of two orders for the last item exactly one
 * succeeds. False when it did not.
 */
export async function takeStock(q: Q, productId: string, quantity: number): Promise<boolean> {
  const result = await q
    .updateTable('products')
    .set((eb) => ({ stock_quantity: eb('stock_quantity', '-', quantity) }))
    .where('product_id', '=', productId)
    .where('is_active', '=', 1)
    .where('stock_quantity', '>=', quantity)
    .executeTakeFirst();
  return Number(result.numUpdatedRows) === 1;
}

/** Puts stock back (a cancelled order). A product deleted since has nothing to return to. */
export async function returnStock(q: Q, productId: string, quantity: number): Promise<void> {
  await q
    .updateTable('products')
    .set((eb) => ({ stock_quantity: eb('stock_quantity', '+', quantity) }))
    .where('product_id', '=', productId)
    .execute();
}

// ---- product pictures

export async function insertProductImage(q: Q, row: ProductImageRow): Promise<void> {
  await q.insertInto('shop_product_images').values(row).execute();
}

/** Attaches a barcode's picture once: false when this product already has it. */
export async function insertEanImageOnce(q: Q, row: ProductImageRow): Promise<boolean> {
  const result = await q
    .insertInto('shop_product_images')
    .values(row)
    .onConflict((oc) => oc.columns(['product_id', 'ean_code']).doNothing())
    .executeTakeFirst();
  return Number(result.numInsertedOrUpdatedRows ?? 0n) === 1;
}

export async function findProductImage(q: Q, productId: string, imageId: string): Promise<ProductImageRow | undefined> {
  return q.selectFrom('shop_product_images').selectAll().where('product_id', '=', productId).where('image_id', '=', imageId).executeTakeFirst();
}

/** Every picture of these products, each product's in upload order. */
export async function imagesOf(q: Q, productIds: readonly string[]): Promise<ProductImageRow[]> {
  if (productIds.length === 0) return [];
  return q.selectFrom('shop_product_images').selectAll().where('product_id', 'in', productIds).orderBy('product_id').orderBy('seq').execute();
}

// ---- orders

export async function insertOrder(q: Q, order: OrderRow, items: readonly OrderItemRow[]): Promise<void> {
  await q.insertInto('orders').values(order).execute();
  await q.insertInto('order_items').values(items as Insertable<OrderItemRow>[]).execute();
}

export async function findOrder(q: Q, orderId: string): Promise<OrderRow | undefined> {
  return q.selectFrom('orders').selectAll().where('order_id', '=', orderId).executeTakeFirst();
}

export async function lockOrder(db: Db, tx: Q, orderId: string): Promise<OrderRow | undefined> {
  return lockForUpdate(db.dialect, tx.selectFrom('orders').selectAll().where('order_id', '=', orderId)).executeTakeFirst();
}

export async function setOrderStatus(q: Q, orderId: string, status: string, now: string): Promise<void> {
  await q.updateTable('orders').set({ status, updated_at: now }).where('order_id', '=', orderId).execute();
}

export type StaleOrder = Pick<OrderRow, 'order_id' | 'updated_at'>;

/**
 * Pending orders with something to pay whose last change (placed, or an
 * intent named) is before `before`, oldest first, from just after `after`:
 * the ones whose hold ran out, a page at a time.
 */
export async function stalePendingOrders(q: Q, before: string, limit: number, after?: StaleOrder): Promise<StaleOrder[]> {
  let query = q
    .selectFrom('orders')
    .select(['order_id', 'updated_at'])
    .where('status', '=', 'pending')
    .where('updated_at', '<', before)
    .where('total_minor', '>', 0)
    .orderBy('updated_at')
    .orderBy('order_id')
    .limit(limit);
  if (after) {
    query = query.where((eb) => eb.or([eb('updated_at', '>', after.updated_at), eb.and([eb('updated_at', '=', after.updated_at), eb('order_id', '>', after.order_id)])]));
  }
  return query.execute();
}

/** Names the intent of a pending order; false when the order is not pending (any more). */
export async function setPaymentIntent(q: Q, orderId: string, intentId: string, now: string): Promise<boolean> {
  const result = await q
    .updateTable('orders')
    .set({ stripe_payment_intent_id: intentId, updated_at: now })
    .where('order_id', '=', orderId)
    .where('status', '=', 'pending')
    .executeTakeFirst();
  return Number(result.numUpdatedRows) === 1;
}

/** Newest first: one user's orders, or everyone's when `userId` is undefined. */
export async function listOrders(q: Q, userId: string | undefined, limit: number, after?: PageAfter): Promise<OrderRow[]> {
  let query = q.selectFrom('orders').selectAll().orderBy('created_at', 'desc').orderBy('order_id', 'desc').limit(limit);
  if (userId !== undefined) query = query.where('user_id', '=', userId);
  if (after) {
    query = query.where((eb) =>
      eb.or([eb('created_at', '<', after.createdAt), eb.and([eb('created_at', '=', after.createdAt), eb('order_id', '<', after.id)])]),
    );
  }
  return query.execute();
}

/** The lines of these orders, each order's in the order they were given. */
export async function itemsOf(q: Q, orderIds: readonly string[]): Promise<OrderItemRow[]> {
  if (orderIds.length === 0) return [];
  return q.selectFrom('order_items').selectAll().where('order_id', 'in', orderIds).orderBy('order_id').orderBy('seq').execute();
}
