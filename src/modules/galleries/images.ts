/**
 * What a gallery image is, apart from the rules about it: the sizes it is
 * stored in, the blob key and URL of each, what an answer shows of it, and
 * what the image routes keep of it to serve a GET without a query (the
 * served-file record, cached per process).
 */
import { LRUCache } from 'lru-cache';
import type { Context } from '../../context.js';
import { LRU_TTL_RESOLUTION_MS } from '../../platform/cache/index.js';
import type { StoredVariant } from '../../images/store.js';
import { SIZE_NAMES, type SizeName } from '../../images/variants.js';
import type { ImageRow } from './repo.js';

/**
 * The sizes a gallery image is stored in, in the order of `urls`: every size
 * of the one table (images/variants.ts), so a size added there is stored,
 * listed and served here too.
 */
export const GALLERY_SIZES: readonly SizeName[] = SIZE_NAMES;
export type GallerySize = SizeName;

export interface GalleryImage {
  image_id: string;
  is_primary: boolean;
  created_at: string;
  width: number;
  height: number;
  bytes: number;
  sha256: string;
  urls: Record<GallerySize, string>;
}

/** What the image routes need to answer a GET without a query (cached per image). */
export interface ImageFile {
  projectId: string;
  ownerId: string;
  createdAt: Date;
  variants: Record<GallerySize, StoredVariant>;
}

export function blobKey(imageId: string, size: GallerySize): string {
  return `gallery/${imageId}/${size}.jpg`;
}

export function imageUrls(projectId: string, imageId: string): Record<GallerySize, string> {
  const base = `/projects/${encodeURIComponent(projectId)}/images/${encodeURIComponent(imageId)}`;
  return Object.fromEntries(GALLERY_SIZES.map((s) => [s, `${base}?size=${s}`])) as Record<GallerySize, string>;
}

/** An image row as served: the stored sizes parsed once. */
export function imageFileOf(row: ImageRow, ownerId: string): ImageFile {
  return {
    projectId: row.project_id,
    ownerId,
    createdAt: new Date(row.created_at),
    variants: JSON.parse(row.variants) as Record<GallerySize, StoredVariant>,
  };
}

const servedFiles = new WeakMap<Context, LRUCache<string, ImageFile>>();

/** The broadcast topic of a deleted gallery image; the message is its image id. */
export const IMAGE_GONE = 'gallery-image-gone';

/**
 * Rows of images served, one cache per process (per Context), shared by
 * every GalleryService in it. A delete anywhere (the routes, an account's
 * deletion, in this process or another) is broadcast as IMAGE_GONE, which
 * drops the row and the small variants' bytes here at once: across
 * processes through Redis with REDIS_URL. A minute's TTL bounds what a lost
 * message costs (checked to the second: see LRU_TTL_RESOLUTION_MS).
 */
export function servedFilesOf(ctx: Context): LRUCache<string, ImageFile> {
  let files = servedFiles.get(ctx);
  if (!files) {
    const made = new LRUCache<string, ImageFile>({ max: 10_000, ttl: 60_000, ttlResolution: LRU_TTL_RESOLUTION_MS });
    ctx.broadcast.listen(IMAGE_GONE, (imageId) => {
      made.delete(imageId);
      for (const size of GALLERY_SIZES) ctx.blobs.forget?.(blobKey(imageId, size));
    });
    servedFiles.set(ctx, made);
    files = made;
  }
  return files;
}
