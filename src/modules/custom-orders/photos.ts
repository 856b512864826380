/**
 * One photo of an order, from staged upload to stored blobs: variants
 * (original, medium, thumb) through the shared image engine from one decode,
 * then the quality facts while the variant blobs are written through the
 * order's BlobBatch, so a later failure can remove them again.
 */
import { randomBytes } from 'node:crypto';
import type { Context } from '../../context.js';
import { newId } from '../../ids.js';
import type { StagedUpload } from '../../images/ingest.js';
import { assessPixels, findDuplicate, MIN_SHORT_SIDE } from '../../images/quality.js';
import { renderAndStore, type BlobBatch, type StoredVariant } from '../../images/store.js';
import type { RenderedImage } from '../../images/variants.js';
import { ORDER_SIZES, type OrderSize } from './links.js';
import { orderMetrics } from './metrics.js';
import { CONTROL_CHARACTERS, firstCharacters, toWellFormed } from '../../platform/text.js';

export type { StoredVariant };

/** Quality as kept in the row: the facts the API shows plus what the duplicate check needs. */
export interface StoredQuality {
  width: number;
  height: number;
  too_small: boolean;
  blurry: boolean;
  duplicate_of: string | null;
  blur_score: number;
  phash: string;
}

export interface StoredPhoto {
  file_id: string;
  original_filename: string;
  stored_filename: string;
  content_type: string;
  bytes: number;
  sha256: string;
  width: number;
  height: number;
  variants: Record<OrderSize, StoredVariant>;
  quality: StoredQuality;
}

export interface IncomingPhoto {
  staged: StagedUpload;
  /** As the client named it; shown back, never used as a path. */
  originalFilename: string;
}

export function blobKey(orderId: string, fileId: string, size: OrderSize): string {
  return `orders/${orderId}/${fileId}/${size}.jpg`;
}

/** All of an order's blobs live under this prefix. */
export function orderPrefix(orderId: string): string {
  return `orders/${orderId}`;
}

/** The Pet Planter service's pattern, `YYYYMMDD_HHMMSS_<random>.jpg`, from the upload time in UTC. */
export function storedFilename(at: Date): string {
  const stamp = at.toISOString().replace(/[-:]/g, '').replace('T', '_').slice(0, 15);
  return `${stamp}_${randomBytes(6).toString('hex')}.jpg`;
}

/** Renders, checks and stores one photo. Blobs written are in `batch`, for the caller to roll back. */
export async function storePhoto(ctx: Context, batch: BlobBatch, orderId: string, photo: IncomingPhoto): Promise<StoredPhoto> {
  const fileId = newId();
  const started = performance.now();
  const stored = await renderAndStore(batch, photo.staged, ORDER_SIZES, (size) => blobKey(orderId, fileId, size), {
    maxImagePixels: ctx.config.maxImagePixels,
    jpegQuality: ctx.config.jpegQuality,
    keepPixels: 'medium',
  });
  const quality = await checkQuality(stored.rendered);
  orderMetrics(ctx).processingSeconds.observe((performance.now() - started) / 1000);
  return {
    file_id: fileId,
    original_filename: displayName(photo.originalFilename),
    stored_filename: storedFilename(ctx.clock.now()),
    content_type: photo.staged.mime,
    bytes: photo.staged.bytes,
    sha256: photo.staged.sha256,
    width: stored.width,
    height: stored.height,
    variants: stored.variants,
    quality,
  };
}

/**
 * The quality facts, measured on the medium variant's pixels as the render
 * made them (asked for with `keepPixels`): blur and pHash are computed at a
 * fixed 512 px working size, so the 1600 px medium gives the same answer as
 * the original, while decoding the upload (or the medium's JPEG) again cost
 * 25 ms or more per photo (bench/orders.bench.ts). The size facts come from
 * the original as displayed.
 */
async function checkQuality(rendered: RenderedImage<OrderSize>): Promise<StoredQuality> {
  if (!rendered.pixels) throw new Error('the render kept no pixels for the quality check');
  const q = await assessPixels({ ...rendered.pixels, channels: 3 });
  const { width, height } = rendered;
  return { width, height, too_small: Math.min(width, height) < MIN_SHORT_SIDE, blurry: q.blurry, duplicate_of: null, blur_score: q.blur_score, phash: q.phash };
}

/**
 * Marks each photo that shows the same picture as an EARLIER photo of the
 * order (upload order), so the first copy stays the reference.
 */
export function markDuplicates(photos: StoredPhoto[]): void {
  photos.forEach((photo, i) => {
    const earlier = photos.slice(0, i).map((p) => ({ file_id: p.file_id, phash: p.quality.phash }));
    photo.quality.duplicate_of = findDuplicate(photo.quality.phash, earlier);
  });
}

/**
 * The client's file name as received, for display: only control characters
 * are removed (PostgreSQL's text cannot hold NUL, and none of them can be
 * shown), a lone surrogate (a name sent as `filename*=utf-16le''…` can hold
 * one; it has no UTF-8 form) becomes U+FFFD here rather than in the
 * database, so the answer shows what is stored, and it is cut at 255 characters. A name with a path in it
 * (`../../etc/passwd`, `C:\\Users\\me\\Max.jpg`) is kept as it is: it is
 * never used to build a path, the spec's "describe the upload as received".
 */
export function displayName(name: string): string {
  return firstCharacters(toWellFormed(name.replace(CONTROL_CHARACTERS, '')), 255) || 'upload';
}
