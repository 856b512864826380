/**
 * Receiving a custom order: the whole upload is one unit. Photos are staged
 * as their parts arrive and rendered concurrently (each starts as soon as it
 * is staged); only when every photo is good are the rows written, in one
 * transaction, after their blobs. Any failure removes the blobs written so
 * far and every temp file, so a rejected upload leaves nothing behind.
 */
import type { Multipart } from '@fastify/multipart';
import { holdAccount } from '../../auth/account-hold.js';
import type { Principal } from '../../auth/principal.js';
import type { Context } from '../../context.js';
import { newId } from '../../ids.js';
import { discardStaged, type StagedUpload } from '../../images/ingest.js';
import { BlobBatch } from '../../images/store.js';
import { readOrderUpload, type OrderText } from './intake.js';
import type { HistoryEntry } from './lifecycle.js';
import { orderMetrics } from './metrics.js';
import { markDuplicates, storePhoto, type StoredPhoto } from './photos.js';
import { presentOrder, type OrderMetadata } from './present.js';
import * as repo from './repo.js';

export async function receiveOrder(ctx: Context, principal: Principal, parts: AsyncIterable<Multipart>): Promise<OrderMetadata> {
  const orderId = newId();
  const batch = new BlobBatch(ctx.blobs, ctx.log);
  const staged: StagedUpload[] = [];
  const work: Array<Promise<StoredPhoto>> = [];
  const limits = { tmpDir: ctx.tmpDir, maxBytes: ctx.config.maxUploadSize, maxFiles: ctx.config.maxFilesPerOrder };
  try {
    const text = await readOrderUpload(parts, limits, (photo) => {
      staged.push(photo.staged);
      const stored = storePhoto(ctx, batch, orderId, photo);
      // Observed by Promise.all below; until the body has ended nobody awaits it, which must not count as unhandled.
      stored.catch(() => undefined);
      work.push(stored);
    });
    const photos = await Promise.all(work);
    markDuplicates(photos);
    const order = await commitOrder(ctx, principal, orderId, text, photos);
    const metrics = orderMetrics(ctx);
    metrics.filesAccepted.inc(photos.length);
    metrics.bytesAccepted.inc(photos.reduce((sum, p) => sum + p.bytes, 0));
    return order;
  } catch (err) {
    // Photos still rendering would write blobs after the rollback; let them finish first.
    await Promise.allSettled(work);
    await batch.rollback();
    throw err; // counted by reason where the route answers (routes.ts), with refusals made before this runs
  } finally {
    await Promise.all(staged.map((s) => discardStaged(s)));
  }
}

async function commitOrder(ctx: Context, principal: Principal, orderId: string, text: OrderText, photos: StoredPhoto[]): Promise<OrderMetadata> {
  const now = ctx.clock.now().toISOString();
  const history: HistoryEntry[] = [{ status: 'pending', at: now, by: principal.userId }];
  const order: repo.OrderRow = {
    order_id: orderId,
    user_id: principal.userId,
    ...text,
    status: 'pending',
    history: JSON.stringify(history),
    created_at: now,
    updated_at: now,
  };
  const files: repo.FileRow[] = photos.map((p, seq) => ({
    file_id: p.file_id,
    order_id: orderId,
    seq,
    original_filename: p.original_filename,
    stored_filename: p.stored_filename,
    content_type: p.content_type,
    bytes: p.bytes,
    width: p.width,
    height: p.height,
    sha256: p.sha256,
    variants: JSON.stringify(p.variants),
    quality: JSON.stringify(p.quality),
    created_at: now,
  }));
  await ctx.db.kysely.transaction().execute(async (tx) => {
    await holdAccount(ctx.db, tx, principal);
    await repo.insertOrder(tx, order, files);
  });
  return presentOrder(ctx, order, files);
}
