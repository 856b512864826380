/**
 * SQL for custom orders and their photos. An order's row is the lock that
 * serialises changes to it (status moves, deletion) across processes.
 */
import { sql, type Kysely, type Transaction } from 'kysely';
import { lockForUpdate, type Db } from '../../platform/db/index.js';
import type { CustomOrderFilesTable, CustomOrdersTable, Database } from '../../platform/db/schema.js';
import type { Position } from '../../platform/http/cursor.js';

export type OrderRow = CustomOrdersTable;
export type FileRow = CustomOrderFilesTable;
type Tx = Transaction<Database> | Kysely<Database>;

export async function insertOrder(tx: Tx, order: OrderRow, files: FileRow[]): Promise<void> {
  await tx.insertInto('custom_orders').values(order).execute();
  if (files.length > 0) await tx.insertInto('custom_order_files').values(files).execute();
}

export async function findOrder(db: Tx, orderId: string): Promise<OrderRow | undefined> {
  return db.selectFrom('custom_orders').selectAll().where('order_id', '=', orderId).executeTakeFirst();
}

export async function lockOrder(db: Db, tx: Tx, orderId: string): Promise<OrderRow | undefined> {
  return lockForUpdate(db.dialect, tx.selectFrom('custom_orders').selectAll().where('order_id', '=', orderId)).executeTakeFirst();
}

export async function updateOrder(tx: Tx, orderId: string, changes: Pick<OrderRow, 'status' | 'history' | 'updated_at'>): Promise<void> {
  await tx.updateTable('custom_orders').set(changes).where('order_id', '=', orderId).execute();
}

/** Files of the given orders in upload order, grouped by order id (one query for a whole page). */
export async function filesOf(db: Tx, orderIds: readonly string[]): Promise<Map<string, FileRow[]>> {
  const byOrder = new Map<string, FileRow[]>(orderIds.map((id) => [id, []]));
  if (orderIds.length === 0) return byOrder;
  const rows = await db.selectFrom('custom_order_files').selectAll().where('order_id', 'in', orderIds).orderBy('order_id').orderBy('seq').execute();
  for (const row of rows) byOrder.get(row.order_id)?.push(row);
  return byOrder;
}

/** One photo with its order's owner, in one statement (the file route's only query). */
export async function findFileWithOwner(db: Tx, orderId: string, fileId: string): Promise<(FileRow & { user_id: string }) | undefined> {
  return db
    .selectFrom('custom_order_files as f')
    .innerJoin('custom_orders as o', 'o.order_id', 'f.order_id')
    .selectAll('f')
    .select('o.user_id')
    .where('f.order_id', '=', orderId)
    .where('f.file_id', '=', fileId)
    .executeTakeFirst();
}

/** Removes the order and its file rows; returns the file ids so the caller can remove their blobs. */
export async function deleteOrder(tx: Tx, orderId: string): Promise<string[]> {
  const files = await tx.selectFrom('custom_order_files').select('file_id').where('order_id', '=', orderId).execute();
  await tx.deleteFrom('custom_order_files').where('order_id', '=', orderId).execute();
  await tx.deleteFrom('custom_orders').where('order_id', '=', orderId).execute();
  return files.map((f) => f.file_id);
}

/** A customer's orders, newest first. */
export async function ordersOf(db: Tx, userId: string): Promise<OrderRow[]> {
  return db
    .selectFrom('custom_orders')
    .selectAll()
    .where('user_id', '=', userId)
    .orderBy('created_at', 'desc')
    .orderBy('order_id', 'desc')
    .execute();
}

export async function orderIdsOf(db: Tx, userId: string): Promise<string[]> {
  const rows = await db.selectFrom('custom_orders').select('order_id').where('user_id', '=', userId).execute();
  return rows.map((r) => r.order_id);
}

/** Orders newest first, `limit` of them after `after` (its id an order_id). */
export async function pageOfOrders(db: Tx, query: { status?: string; limit: number; after?: Position }): Promise<OrderRow[]> {
  let q = db.selectFrom('custom_orders').selectAll();
  if (query.status !== undefined) q = q.where('status', '=', query.status);
  const after = query.after;
  if (after) {
    q = q.where((eb) =>
      eb.or([eb('created_at', '<', after.createdAt), eb.and([eb('created_at', '=', after.createdAt), eb('order_id', '<', after.id)])]),
    );
  }
  return q.orderBy('created_at', 'desc').orderBy('order_id', 'desc').limit(query.limit).execute();
}

/** Orders per status, for the gauge read on every scrape. */
export async function countByStatus(db: Tx): Promise<Array<{ status: string; count: number }>> {
  const rows = await db
    .selectFrom('custom_orders')
    .select(['status', sql<string | number>`count(*)`.as('count')])
    .groupBy('status')
    .execute();
  // PostgreSQL returns count(*) as a bigint string, SQLite as a number.
  return rows.map((r) => ({ status: r.status, count: Number(r.count) }));
}
