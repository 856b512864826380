/**
 * Product images by barcode (docs/product-images.md): the rules behind the
 * routes. A user asks for a barcode; an `ean_fetch` job (fetch-job.ts) asks
 * the product database for its picture, downloads it through the guarded
 * fetch and stores it with the upload variants. Pictures are shared facts
 * (one per barcode, readable by every authenticated user); jobs stay
 * visible to their owner and admins only.
 *
 * Dedupe: the job's dedupe key is (user, barcode), so the same user asking
 * again while a job is in flight gets that job back. Different users get
 * jobs of their own, and the single-flight lease in fetch-job.ts makes sure
 * only one of them calls the provider; a barcode already stored completes
 * from the store without a provider call.
 */
import { LRUCache } from 'lru-cache';
import { LRU_TTL_RESOLUTION_MS } from '../../platform/cache/index.js';
import type { Principal } from '../../auth/principal.js';
import { isoAgo } from '../../clock.js';
import type { Context } from '../../context.js';
import { NotFound, ValidationFailed } from '../../errors.js';
import type { Job, JobPage, JobStatus } from '../../platform/jobs/index.js';
import { normalizeBarcode } from './barcode.js';
import * as repo from './repo.js';
import { PRODUCT_SIZES, type ProductImageAnswer, type ProductSize } from './schemas.js';

export const EAN_FETCH = 'ean_fetch';

export interface EanFetchInput {
  ean_code: string;
  description: string | null;
  /** A shop product (modules/shop) the picture is attached to once it is stored. */
  product_id?: string;
}

import type { StoredVariant } from '../../images/store.js';

export type { StoredVariant };

/** What the file route needs to answer without a query (cached per barcode). */
export interface ProductFile {
  imageId: string;
  fetchedAt: Date;
  variants: Record<ProductSize, StoredVariant>;
}

export function productBlobKey(imageId: string, size: ProductSize): string {
  return `product/${imageId}/${size}.jpg`;
}

export function productUrls(eanCode: string): ProductImageAnswer['urls'] {
  const base = `/api/v1/images/${encodeURIComponent(eanCode)}/file`;
  return Object.fromEntries(PRODUCT_SIZES.map((s) => [s, `${base}?size=${s}`])) as ProductImageAnswer['urls'];
}

export function toAnswer(row: repo.ProductImageRow): ProductImageAnswer {
  return {
    ean_code: row.ean_code,
    product_name: row.product_name,
    source_url: row.source_url,
    fetched_at: row.fetched_at,
    width: Number(row.width),
    height: Number(row.height),
    urls: productUrls(row.ean_code),
  };
}

/** The normalised code, or 422 `invalid_ean` naming the field. */
export function parseEan(raw: unknown, field: string): string {
  const text = typeof raw === 'number' && Number.isSafeInteger(raw) && raw >= 0 ? String(raw) : raw;
  const code = typeof text === 'string' ? normalizeBarcode(text) : null;
  if (code === null) {
    throw new ValidationFailed(
      'ean_code must be a GTIN-8, UPC-A, EAN-13 or GTIN-14 of digits with a correct check digit.',
      [{ field, message: 'is not a valid barcode' }],
      'invalid_ean',
    );
  }
  return code;
}

function canSee(principal: Principal, job: Job): boolean {
  return principal.isAdmin || job.user_id === principal.userId;
}

/**
 * A lease is deleted this long after it ran out. Jobs waiting on a failed
 * holder read its error within a second or two (they look every 500 ms);
 * one that found no lease would only ask the provider itself.
 */
export const LEASE_KEEP_MS = 60 * 60_000;

export class ProductImageService {
  /** Stored pictures never change (a barcode is fetched once), so their metadata can be cached. */
  private readonly files = new LRUCache<string, ProductFile>({ max: 10_000, ttl: 60_000, ttlResolution: LRU_TTL_RESOLUTION_MS });

  constructor(private readonly ctx: Context) {}

  async requestFetch(principal: Principal, rawEan: unknown, description: string | null | undefined) {
    const eanCode = parseEan(rawEan, 'body.ean_code');
    const input: EanFetchInput = { ean_code: eanCode, description: description?.trim() || null };
    const job = await this.ctx.jobs.enqueue(EAN_FETCH, input, {
      userId: principal.userId,
      dedupeKey: `${EAN_FETCH}:${principal.userId}:${eanCode}`,
    });
    // The spec's answer is `status: "queued"`: the request is in the queue. A job handed back by the
    // dedupe may already be running; its own route (GET /api/v1/jobs/{id}) says where it is.
    return { job_id: job.job_id, status: 'queued' as const, ean_code: eanCode };
  }

  /** A job of any kind, to its owner or an admin; 404 for everyone else, as if it did not exist. */
  async job(principal: Principal, jobId: string): Promise<Job> {
    const job = await this.ctx.jobs.get(jobId);
    if (!job || !canSee(principal, job)) throw new NotFound('No such job.', 'job_not_found');
    return job;
  }

  async jobs(principal: Principal, query: { status?: JobStatus; type?: string; limit?: number; cursor?: string }): Promise<JobPage> {
    const filters = { status: query.status, type: query.type, limit: query.limit, cursor: query.cursor };
    return principal.isAdmin ? this.ctx.jobs.list({ all: true, ...filters }) : this.ctx.jobs.list({ userId: principal.userId, ...filters });
  }

  /** Deletes the barcode leases that ran out over LEASE_KEEP_MS ago (repo.deleteDeadLeases); resolves with how many. */
  async pruneDeadLeases(): Promise<number> {
    const deleted = await repo.deleteDeadLeases(this.ctx.db.kysely, isoAgo(this.ctx.clock, LEASE_KEEP_MS));
    if (deleted > 0) this.ctx.log.info({ leases: deleted }, 'pruned barcode leases that ran out');
    return deleted;
  }

  async image(rawEan: string): Promise<ProductImageAnswer> {
    const eanCode = parseEan(rawEan, 'params.ean_code');
    const row = await repo.findImage(this.ctx.db.kysely, eanCode);
    if (!row) throw new NotFound(`No picture has been fetched for barcode ${eanCode} yet.`, 'image_not_found');
    return toAnswer(row);
  }

  async file(rawEan: string): Promise<ProductFile> {
    const eanCode = parseEan(rawEan, 'params.ean_code');
    let file = this.files.get(eanCode);
    if (!file) {
      const row = await repo.findImage(this.ctx.db.kysely, eanCode);
      if (!row) throw new NotFound(`No picture has been fetched for barcode ${eanCode} yet.`, 'image_not_found');
      file = { imageId: row.image_id, fetchedAt: new Date(row.fetched_at), variants: JSON.parse(row.variants) as ProductFile['variants'] };
      this.files.set(eanCode, file);
    }
    return file;
  }
}
