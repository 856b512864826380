/**
 * The end of `POST /products/{id}/images/from-ean`: when its `ean_fetch` job
 * has the barcode's picture, the picture becomes one of the product's. The
 * blobs stay the barcode's own (shared with everyone who asked for it); the
 * product gets a row pointing at them, once, under its lock.
 */
import type { Logger } from 'pino';
import { isoNow } from '../../clock.js';
import type { Context } from '../../context.js';
import { newId } from '../../ids.js';
import type { ProductImagesTable } from '../../platform/db/schema.js';
import * as repo from './repo.js';

/** Attaches `picture` to the product; a product deleted meanwhile is left alone (logged), not an error of the job. */
export async function attachEanPicture(ctx: Context, productId: string, picture: ProductImagesTable, log: Logger): Promise<void> {
  await ctx.db.kysely.transaction().execute(async (tx) => {
    const product = await repo.lockProduct(ctx.db, tx, productId);
    if (!product) {
      log.info({ productId, ean: picture.ean_code }, 'product deleted before its barcode picture arrived: not attached');
      return;
    }
    const now = isoNow(ctx.clock);
    const seq = Number(product.next_image_seq);
    const attached = await repo.insertEanImageOnce(tx, {
      image_id: newId(),
      product_id: productId,
      seq,
      source: 'ean',
      ean_code: picture.ean_code,
      blob_id: picture.image_id,
      width: Number(picture.width),
      height: Number(picture.height),
      bytes: Number(picture.bytes),
      sha256: picture.sha256,
      variants: picture.variants,
      created_at: now,
    });
    if (attached) await repo.updateProduct(tx, productId, { next_image_seq: seq + 1, updated_at: now });
  });
}
