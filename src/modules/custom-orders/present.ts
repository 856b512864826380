/**
 * How an order leaves the service: rows → `order_metadata` of the spec, with
 * fresh signed links for every photo. Internal facts (variant etags, the
 * pHash, the blur score) stay inside.
 */
import type { Context } from '../../context.js';
import type { HistoryEntry, OrderStatus } from './lifecycle.js';
import { signedUrls, type OrderSize } from './links.js';
import type { StoredQuality } from './photos.js';
import type { FileRow, OrderRow } from './repo.js';

export interface OrderFile {
  file_id: string;
  original_filename: string;
  stored_filename: string;
  content_type: string;
  bytes: number;
  width: number;
  height: number;
  sha256: string;
  quality: { width: number; height: number; too_small: boolean; blurry: boolean; duplicate_of: string | null };
  urls: Record<OrderSize, string>;
}

export interface OrderMetadata {
  order_id: string;
  user_id: string;
  pet_name: string | null;
  pet_type: string | null;
  notes: string | null;
  status: OrderStatus;
  upload_timestamp: string;
  updated_at: string;
  history: HistoryEntry[];
  files: OrderFile[];
}

function presentFile(ctx: Context, file: FileRow): OrderFile {
  const q = JSON.parse(file.quality) as StoredQuality;
  return {
    file_id: file.file_id,
    original_filename: file.original_filename,
    stored_filename: file.stored_filename,
    content_type: file.content_type,
    bytes: file.bytes,
    width: file.width,
    height: file.height,
    sha256: file.sha256,
    quality: { width: q.width, height: q.height, too_small: q.too_small, blurry: q.blurry, duplicate_of: q.duplicate_of },
    urls: signedUrls(ctx, file.order_id, file.file_id),
  };
}

export function presentOrder(ctx: Context, order: OrderRow, files: readonly FileRow[]): OrderMetadata {
  return {
    order_id: order.order_id,
    user_id: order.user_id,
    pet_name: order.pet_name,
    pet_type: order.pet_type,
    notes: order.notes,
    // Only lifecycle statuses are ever written (service.ts), so the column holds an OrderStatus.
    status: order.status as OrderStatus,
    upload_timestamp: order.created_at,
    updated_at: order.updated_at,
    history: JSON.parse(order.history) as HistoryEntry[],
    files: files.map((f) => presentFile(ctx, f)),
  };
}
