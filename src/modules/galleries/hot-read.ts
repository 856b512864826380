/**
 * The hot path for a public gallery image (platform/http/hot-path.ts):
 * `GET /projects/{p}/images/{i}[?size=…]` answered from memory, exactly as
 * the route in routes.ts answers it, when the image's row is in the
 * service's cache: a 304 from the row alone, as the route answers it, or a
 * 200 when the bytes are cached too. When the front door read the request
 * and the row or the bytes are not cached, it loads them (the row as the
 * route does, the bytes through the caching blob store) and is asked again.
 * It declines, and Fastify answers, whenever anything else could apply: a
 * credential (it must be checked, and a bad one is a 401), a Range or
 * If-Range, an If-Match or If-Unmodified-Since, a CORS request, a 200 of a size that is streamed rather than
 * kept in memory, an image it could not load, or an unusual URL.
 *
 * Installed only when reads are public and the `default` rate limit is off
 * (RATE_LIMIT_DEFAULT=0): with a limit on, every read must be counted by the
 * rate limiter, which lives in Fastify.
 */
import type { Context } from '../../context.js';
import { fileHeaders, notModified, SMALL_FILE_BYTES } from '../../images/serve.js';
import type { StoredVariant } from '../../images/store.js';
import { CORS_HEADERS_WITHOUT_ORIGIN } from '../../platform/http/cors.js';
import type { HotPath, HotReply, HotRequest } from '../../platform/http/hot-path.js';
import { blobKey, GALLERY_SIZES, type GallerySize } from './images.js';
import type { GalleryService } from './service.js';

export const IMAGE_ROUTE = '/projects/:project_id/images/:image_id';
/** Stored sizes never change under their URL. */
export const IMMUTABLE = 'max-age=31536000, immutable';
export const PUBLIC_IMAGE_CACHE = `public, ${IMMUTABLE}`;

/** The route's URL with nothing that needs decoding or validating beyond this pattern. */
const IMAGE_URL = new RegExp(`^/projects/([A-Za-z0-9_-]{1,64})/images/([A-Za-z0-9_-]{1,64})(?:\\?size=(${GALLERY_SIZES.join('|')}))?$`);

interface VariantHeaders {
  etag: string;
  /** [name, value, …] of a 304 and of a 200. */
  notModified: string[];
  ok: string[];
}

export function galleryHotRead(ctx: Context, galleries: GalleryService): HotPath | null {
  if (!galleries.publicRead || ctx.config.rateLimitDefault !== 0) return null;
  const cors = ctx.config.allowedOrigins.length > 0;
  // What CORS adds to every answer, a request without an Origin included (one with an Origin goes the long way).
  const corsHeaders = cors ? CORS_HEADERS_WITHOUT_ORIGIN : [];

  /** A stored size's answer headers never change, so they are built once per cached row. */
  const headerCache = new WeakMap<StoredVariant, VariantHeaders>();
  const headersOf = (variant: StoredVariant, createdAt: Date): VariantHeaders => {
    let headers = headerCache.get(variant);
    if (!headers) {
      const etag = `"${variant.etag}"`;
      // The same headers sendStoredImage writes for this file.
      const notModified = [...corsHeaders, ...fileHeaders({ lastModified: createdAt, cacheControl: PUBLIC_IMAGE_CACHE }, etag)];
      headers = { etag, notModified, ok: [...notModified, 'content-type', 'image/jpeg', 'content-length', String(variant.bytes)] };
      headerCache.set(variant, headers);
    }
    return headers;
  };

  /** Leaves nothing unsettled: whatever fails here, the route meets again and answers. */
  const warmBytes = (key: string): Promise<void> => ctx.blobs.readAll(key).then(
    () => undefined,
    () => undefined,
  );
  const canCacheBytes = ctx.blobs.peek !== undefined;

  /** A row cache miss: loads the row, and for a plain GET of a small size its bytes too. */
  const warm = async (req: HotRequest, projectId: string, imageId: string, size: GallerySize): Promise<void> => {
    const file = await galleries.warmPublicFile(projectId, imageId);
    const conditional = req.headers['if-none-match'] !== undefined || req.headers['if-modified-since'] !== undefined;
    if (file && !conditional && canCacheBytes && file.variants[size].bytes <= SMALL_FILE_BYTES) await warmBytes(blobKey(imageId, size));
  };

  return (req: HotRequest, canWait: boolean): HotReply | Promise<void> | null => {
    if (req.method !== 'GET') return null;
    const h = req.headers;
    if (h.authorization !== undefined || h['x-api-key'] !== undefined || h.range !== undefined || h['if-range'] !== undefined) return null;
    // Preconditions (a 412 when the copy changed) are the route's to weigh.
    if (h['if-match'] !== undefined || h['if-unmodified-since'] !== undefined) return null;
    if (cors && h.origin !== undefined) return null;
    const m = IMAGE_URL.exec(req.url ?? '');
    if (!m) return null;
    const [, projectId, imageId, sizeParam] = m as unknown as [string, string, string, GallerySize | undefined];
    const size: GallerySize = sizeParam ?? 'original';
    const file = galleries.cachedPublicFile(projectId, imageId);
    if (!file) return canWait ? warm(req, projectId, imageId, size) : null;
    const variant = file.variants[size];
    const headers = headersOf(variant, file.createdAt);
    // A revalidation needs only the row, as on the route: the bytes may have left the cache, or be too big for it.
    if (notModified(req, headers.etag, file.createdAt)) return { route: IMAGE_ROUTE, status: 304, headers: headers.notModified };
    if (variant.bytes > SMALL_FILE_BYTES) return null;
    const key = blobKey(imageId, size);
    const body = ctx.blobs.peek?.(key);
    if (body === undefined) return canWait && canCacheBytes ? warmBytes(key) : null;
    if (body.length !== variant.bytes) return null;
    return { route: IMAGE_ROUTE, status: 200, headers: headers.ok, body };
  };
}
