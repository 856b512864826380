/**
 * Custom orders (docs/custom-orders.md): a customer's photos of a pet with a
 * few details, which the shop then works through a status lifecycle. This
 * module owns the rules; routes.ts only speaks HTTP.
 *
 *   upload.ts     the upload as one unit (stage, render in parallel, commit)
 *   intake.ts     multipart parts → staged photos and checked text fields
 *   photos.ts     one photo: variants, quality facts, blob keys
 *   lifecycle.ts  status moves and when an order may be deleted
 *   links.ts      signed links to photos
 *   webhook.ts    status-change notifications through the job system
 *   metrics.ts    upload statistics and orders by status
 *
 * Access: a customer sees only their own orders (others answer 404, as if
 * they did not exist); admins see and move every order.
 */
import type { Multipart } from '@fastify/multipart';
import type { Principal } from '../../auth/principal.js';
import type { Context } from '../../context.js';
import { NotFound, Unauthorized } from '../../errors.js';
import { decodePosition, encodePosition } from '../../platform/http/cursor.js';
import { assertDeletable, assertMove, type HistoryEntry, type OrderStatus } from './lifecycle.js';
import { verifyLink, type OrderSize } from './links.js';
import { orderPrefix, blobKey, type StoredVariant } from './photos.js';
import { presentOrder, type OrderMetadata } from './present.js';
import * as repo from './repo.js';
import { receiveOrder } from './upload.js';
import { announceStatusChange } from './webhook.js';

export interface PhotoFile {
  key: string;
  variant: StoredVariant;
  createdAt: Date;
}

export interface AdminPage {
  orders: OrderMetadata[];
  next_cursor: string | null;
}

function notFound(): NotFound {
  return new NotFound('No such order.', 'order_not_found');
}

function canSee(principal: Principal, ownerId: string): boolean {
  return principal.isAdmin || principal.userId === ownerId;
}

export class OrderService {
  constructor(private readonly ctx: Context) {}

  upload(principal: Principal, parts: AsyncIterable<Multipart>): Promise<OrderMetadata> {
    return receiveOrder(this.ctx, principal, parts);
  }

  /** The caller's own orders, newest first (admins too see only their own here; /admin/orders lists all). */
  async list(principal: Principal): Promise<OrderMetadata[]> {
    const orders = await repo.ordersOf(this.ctx.db.kysely, principal.userId);
    return this.present(orders);
  }

  async get(principal: Principal, orderId: string): Promise<OrderMetadata> {
    const order = await repo.findOrder(this.ctx.db.kysely, orderId);
    if (!order || !canSee(principal, order.user_id)) throw notFound();
    return (await this.present([order]))[0] as OrderMetadata;
  }

  /** Deletes the order and its files; only while pending or cancelled. */
  async remove(principal: Principal, orderId: string): Promise<void> {
    const { ctx } = this;
    await ctx.db.kysely.transaction().execute(async (tx) => {
      const order = await repo.lockOrder(ctx.db, tx, orderId);
      if (!order || !canSee(principal, order.user_id)) throw notFound();
      assertDeletable(order.status as OrderStatus);
      await repo.deleteOrder(tx, orderId);
    });
    await this.deleteFiles(orderId);
  }

  /** An admin moves the order one step of the lifecycle; the change is kept and announced. */
  async setStatus(admin: Principal, orderId: string, status: OrderStatus): Promise<OrderMetadata> {
    const { ctx } = this;
    const at = ctx.clock.now().toISOString();
    const { order, dispatch } = await ctx.db.kysely.transaction().execute(async (tx) => {
      const row = await repo.lockOrder(ctx.db, tx, orderId);
      if (!row) throw notFound();
      assertMove(row.status as OrderStatus, status);
      const history = [...(JSON.parse(row.history) as HistoryEntry[]), { status, at, by: admin.userId }];
      const changes = { status, history: JSON.stringify(history), updated_at: at };
      await repo.updateOrder(tx, orderId, changes);
      return { order: { ...row, ...changes }, dispatch: await announceStatusChange(ctx, tx, { order_id: orderId, status, at }) };
    });
    await dispatch();
    return (await this.present([order]))[0] as OrderMetadata;
  }

  /** Every customer's orders, newest first, optionally of one status; keyset pages. */
  async adminPage(query: { status?: OrderStatus; limit: number; cursor?: string }): Promise<AdminPage> {
    const after = query.cursor === undefined ? undefined : decodePosition(query.cursor);
    const rows = await repo.pageOfOrders(this.ctx.db.kysely, { status: query.status, limit: query.limit + 1, after });
    const page = rows.slice(0, query.limit);
    const last = page[page.length - 1];
    const more = rows.length > query.limit && last !== undefined;
    return { orders: await this.present(page), next_cursor: more ? encodePosition({ createdAt: last.created_at, id: last.order_id }) : null };
  }

  /**
   * The stored file behind the photo route. With a signed link (`link`), the
   * link is the permission (403 when altered or expired); without one, the
   * caller must be the owner or an admin (401 / 404).
   */
  async photoFile(principal: Principal | null, orderId: string, fileId: string, size: OrderSize, link?: { expires: number; sig: string }): Promise<PhotoFile> {
    if (link) verifyLink(this.ctx, { orderId, fileId, size, expires: link.expires }, link.sig);
    else if (!principal) throw new Unauthorized('Sign in, or use a signed link from the order.');
    const row = await repo.findFileWithOwner(this.ctx.db.kysely, orderId, fileId);
    if (!row || (!link && principal && !canSee(principal, row.user_id))) throw new NotFound('No such photo.', 'file_not_found');
    const variants = JSON.parse(row.variants) as Record<OrderSize, StoredVariant>;
    return { key: blobKey(orderId, fileId, size), variant: variants[size], createdAt: new Date(row.created_at) };
  }

  /** Removes every order of a user, whatever its status, with its files (account deletion). */
  async deleteAllOf(userId: string): Promise<void> {
    const { ctx } = this;
    for (const orderId of await repo.orderIdsOf(ctx.db.kysely, userId)) {
      await ctx.db.kysely.transaction().execute((tx) => repo.deleteOrder(tx, orderId));
      await this.deleteFiles(orderId);
    }
  }

  private async present(orders: repo.OrderRow[]): Promise<OrderMetadata[]> {
    const files = await repo.filesOf(this.ctx.db.kysely, orders.map((o) => o.order_id));
    return orders.map((o) => presentOrder(this.ctx, o, files.get(o.order_id) ?? []));
  }

  private async deleteFiles(orderId: string): Promise<void> {
    // The rows are gone already: a blob left behind is an orphan that no row points at (harmless, see docs/architecture.md), not an error for the caller.
    await this.ctx.blobs.deletePrefix(orderPrefix(orderId)).catch((err: unknown) => this.ctx.log.warn({ err, orderId }, 'order blob delete failed'));
  }
}

/** Account deletion hook (modules/account-cleanup.ts). */
export async function deleteUserOrders(ctx: Context, userId: string): Promise<void> {
  await new OrderService(ctx).deleteAllOf(userId);
}

/** Whether a shop order of `principal` may name this custom order (modules/shop): their own, or any that exists for an admin. */
export async function customOrderLinkable(ctx: Context, principal: Principal, orderId: string): Promise<boolean> {
  const order = await repo.findOrder(ctx.db.kysely, orderId);
  return order !== undefined && (principal.isAdmin || order.user_id === principal.userId);
}
