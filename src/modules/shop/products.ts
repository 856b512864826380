/**
 * Products (docs/shop.md): what the shop sells, at what price, with how much
 * in stock, and their pictures. Anyone reads active products; admins read
 * all and change them. A product an order refers to is never removed, only
 * made inactive: orders keep pointing at it.
 *
 * Pictures: an upload goes through the same engine as a gallery image (four
 * sizes, blobs first, then the row under the product's lock); a barcode's
 * picture is fetched by an `ean_fetch` job (modules/product-images) and
 * attached when it completes (ean-attach.ts).
 */
import { isoNow } from '../../clock.js';
import type { Context } from '../../context.js';
import { NotFound, ValidationFailed } from '../../errors.js';
import { newId } from '../../ids.js';
import { discardStaged, type ReceiveUpload } from '../../images/ingest.js';
import { deleteBlobs, imageRowFields, storeRendered, type StoredVariant } from '../../images/store.js';
import { SIZE_NAMES, type SizeName } from '../../images/variants.js';
import type { Principal } from '../../auth/principal.js';
import { decodePosition, encodePosition } from '../../platform/http/cursor.js';
import { EAN_FETCH, parseEan, productBlobKey, type EanFetchInput } from '../product-images/service.js';
import { PRODUCT_SIZES } from '../product-images/schemas.js';
import type { JobStatus } from '../../platform/jobs/index.js';
import { formatMoney, isCurrency, MoneyError, parseMoney } from './money.js';
import * as repo from './repo.js';
import type { ProductBody, ProductChanges, ProductListQuery } from './schemas.js';

/** The currency of a product created without one. */
export const DEFAULT_CURRENCY = 'EUR';

export interface ProductImageView {
  image_id: string;
  source: 'upload' | 'ean';
  ean_code: string | null;
  width: number;
  height: number;
  created_at: string;
  urls: Partial<Record<SizeName, string>>;
}

export interface ProductView {
  id: string;
  name: string;
  description: string;
  price: string;
  currency: string;
  category: string | null;
  ean_code: string | null;
  image_url: string | null;
  images: ProductImageView[];
  stock_quantity: number;
  is_active: boolean;
  created_at: string;
  updated_at: string;
}

/** What the picture route needs to send one size. */
export interface ProductImageFile {
  key: string;
  variant: StoredVariant;
  createdAt: Date;
}

/** Blob key of an uploaded product picture's size. */
export function shopBlobKey(imageId: string, size: SizeName): string {
  return `shop/${imageId}/${size}.jpg`;
}

/** The sizes a picture has: all four for an upload; a barcode's picture is stored without `game`. */
function sizesOf(source: repo.ProductImageRow['source']): readonly SizeName[] {
  return source === 'upload' ? SIZE_NAMES : PRODUCT_SIZES;
}

function blobKeyOf(row: Pick<repo.ProductImageRow, 'source' | 'blob_id'>, size: SizeName): string {
  return row.source === 'upload' ? shopBlobKey(row.blob_id, size) : productBlobKey(row.blob_id, size as (typeof PRODUCT_SIZES)[number]);
}

function imageView(row: repo.ProductImageRow): ProductImageView {
  const base = `/products/${encodeURIComponent(row.product_id)}/images/${encodeURIComponent(row.image_id)}`;
  return {
    image_id: row.image_id,
    source: row.source,
    ean_code: row.ean_code,
    width: Number(row.width),
    height: Number(row.height),
    created_at: row.created_at,
    urls: Object.fromEntries(sizesOf(row.source).map((s) => [s, `${base}?size=${s}`])),
  };
}

export function productView(row: repo.ProductRow, images: readonly repo.ProductImageRow[]): ProductView {
  const views = images.map(imageView);
  return {
    id: row.product_id,
    name: row.name,
    description: row.description,
    price: formatMoney(row.price_minor, row.currency),
    currency: row.currency,
    category: row.category,
    ean_code: row.ean_code,
    image_url: views[0]?.urls.medium ?? null,
    images: views,
    stock_quantity: Number(row.stock_quantity),
    is_active: row.is_active === 1,
    created_at: row.created_at,
    updated_at: row.updated_at,
  };
}

const productNotFound = (): NotFound => new NotFound('No such product.', 'product_not_found');

/** The currency a request names, or 422 naming the field when it is not an ISO 4217 code. */
function currencyOf(code: string | undefined, fallback: string): string {
  if (code === undefined) return fallback;
  if (!isCurrency(code)) throw new ValidationFailed(`currency "${code}" is not an ISO 4217 code.`, [{ field: 'body.currency', message: 'must be an ISO 4217 code such as "EUR"' }], 'invalid_currency');
  return code;
}

/** Minor units of a price from a request, or 422 naming the field. */
function priceOf(value: string | number, currency: string): number {
  try {
    return parseMoney(value, currency);
  } catch (err) {
    if (!(err instanceof MoneyError)) throw err;
    throw new ValidationFailed(`price ${err.message}.`, [{ field: 'body.price', message: err.message }], 'invalid_price');
  }
}

/** The name as shown, trimmed; one of spaces only is a 422. */
function nameOf(value: string): string {
  const name = value.trim();
  if (!name) throw new ValidationFailed('name must not be blank.', [{ field: 'body.name', message: 'is blank' }]);
  return name;
}

function eanOf(value: string | null | undefined): string | null {
  return value === null || value === undefined ? null : parseEan(value, 'body.ean_code');
}

export class ProductService {
  constructor(private readonly ctx: Context) {}

  /** A product the caller may see: admins see every one, everyone else the active ones. */
  private async visible(principal: Principal | null, productId: string): Promise<repo.ProductRow> {
    const row = await repo.findProduct(this.ctx.db.kysely, productId);
    if (!row || (row.is_active !== 1 && !principal?.isAdmin)) throw productNotFound();
    return row;
  }

  private async withImages(row: repo.ProductRow): Promise<ProductView> {
    return productView(row, await repo.imagesOf(this.ctx.db.kysely, [row.product_id]));
  }

  async get(principal: Principal | null, productId: string): Promise<ProductView> {
    return this.withImages(await this.visible(principal, productId));
  }

  async list(principal: Principal | null, query: ProductListQuery): Promise<{ products: ProductView[]; next_cursor: string | null }> {
    const after = query.cursor === undefined ? undefined : decodePosition(query.cursor);
    const filter: repo.ProductFilter = { activeOnly: !principal?.isAdmin, category: query.category, text: query.q };
    // One row more than the page says whether another page follows, without a count.
    const rows = await repo.listProducts(this.ctx.db.kysely, filter, query.limit + 1, after);
    const page = rows.slice(0, query.limit);
    const images = await repo.imagesOf(this.ctx.db.kysely, page.map((r) => r.product_id));
    const byProduct = new Map<string, repo.ProductImageRow[]>();
    for (const image of images) byProduct.set(image.product_id, [...(byProduct.get(image.product_id) ?? []), image]);
    const last = page[page.length - 1];
    return {
      products: page.map((r) => productView(r, byProduct.get(r.product_id) ?? [])),
      next_cursor: rows.length > query.limit && last ? encodePosition({ createdAt: last.created_at, id: last.product_id }) : null,
    };
  }

  async create(body: ProductBody): Promise<ProductView> {
    const currency = currencyOf(body.currency, DEFAULT_CURRENCY);
    const now = isoNow(this.ctx.clock);
    const row: repo.ProductRow = {
      product_id: newId(),
      name: nameOf(body.name),
      description: body.description ?? '',
      price_minor: priceOf(body.price, currency),
      currency,
      category: body.category ?? null,
      ean_code: eanOf(body.ean_code),
      stock_quantity: body.stock_quantity ?? 0,
      is_active: body.is_active === false ? 0 : 1,
      next_image_seq: 1,
      created_at: now,
      updated_at: now,
    };
    await repo.insertProduct(this.ctx.db.kysely, row);
    return productView(row, []);
  }

  async update(productId: string, changes: ProductChanges): Promise<ProductView> {
    const { ctx } = this;
    const row = await ctx.db.kysely.transaction().execute(async (tx) => {
      const current = await repo.lockProduct(ctx.db, tx, productId);
      if (!current) throw productNotFound();
      const currency = currencyOf(changes.currency, current.currency);
      // A price is a number of minor units of its currency: a new currency needs its price with it.
      if (currency !== current.currency && changes.price === undefined) {
        throw new ValidationFailed('A new currency needs the price in it: send price with currency.', [{ field: 'body.price', message: 'is required when currency changes' }], 'price_required');
      }
      const next: repo.ProductRow = {
        ...current,
        ...(changes.name !== undefined ? { name: nameOf(changes.name) } : {}),
        ...(changes.description !== undefined ? { description: changes.description } : {}),
        ...(changes.price !== undefined ? { price_minor: priceOf(changes.price, currency) } : {}),
        currency,
        ...(changes.category !== undefined ? { category: changes.category } : {}),
        ...(changes.ean_code !== undefined ? { ean_code: eanOf(changes.ean_code) } : {}),
        ...(changes.stock_quantity !== undefined ? { stock_quantity: changes.stock_quantity } : {}),
        ...(changes.is_active !== undefined ? { is_active: changes.is_active ? 1 : 0 } : {}),
        updated_at: isoNow(ctx.clock),
      };
      const { product_id: _id, created_at: _created, ...set } = next;
      await repo.updateProduct(tx, productId, set);
      return next;
    });
    return this.withImages(row);
  }

  /**
   * Removes a product no order refers to, with its uploaded pictures; one an
   * order refers to is made inactive instead, so the order still names it.
   */
  async remove(productId: string): Promise<{ soft: boolean }> {
    const { ctx } = this;
    const outcome = await ctx.db.kysely.transaction().execute(async (tx) => {
      const current = await repo.lockProduct(ctx.db, tx, productId);
      if (!current) throw productNotFound();
      if (await repo.isOrdered(tx, productId)) {
        await repo.updateProduct(tx, productId, { is_active: 0, updated_at: isoNow(ctx.clock) });
        return { soft: true, uploads: [] as repo.ProductImageRow[] };
      }
      const images = await repo.imagesOf(tx, [productId]);
      await repo.deleteProduct(tx, productId);
      // A barcode's picture is shared with every product and user that asked for it: only uploads go.
      return { soft: false, uploads: images.filter((i) => i.source === 'upload') };
    });
    await deleteBlobs(ctx.blobs, ctx.log, outcome.uploads.flatMap((i) => SIZE_NAMES.map((s) => shopBlobKey(i.blob_id, s))));
    return { soft: outcome.soft };
  }

  /** An uploaded picture, stored in every size, then attached under the product's lock. */
  async addImage(productId: string, receive: ReceiveUpload): Promise<ProductImageView & { product_id: string }> {
    const { ctx } = this;
    // Refuse before reading the body when there is no such product.
    if (!(await repo.findProduct(ctx.db.kysely, productId))) throw productNotFound();
    const staged = await receive({ tmpDir: ctx.tmpDir, maxBytes: ctx.config.maxUploadSize });
    const imageId = newId();
    const options = { maxImagePixels: ctx.config.maxImagePixels, jpegQuality: ctx.config.jpegQuality };
    try {
      return await storeRendered(ctx, staged, SIZE_NAMES, (size) => shopBlobKey(imageId, size), options, async (stored) => {
        const now = isoNow(ctx.clock);
        const row = await ctx.db.kysely.transaction().execute(async (tx) => {
          // Deleted while its picture was being made: the blobs go with the error below.
          const product = await repo.lockProduct(ctx.db, tx, productId);
          if (!product) throw productNotFound();
          const image: repo.ProductImageRow = {
            image_id: imageId,
            product_id: productId,
            seq: Number(product.next_image_seq),
            source: 'upload',
            ean_code: null,
            blob_id: imageId,
            ...imageRowFields(staged, stored),
            created_at: now,
          };
          await repo.insertProductImage(tx, image);
          await repo.updateProduct(tx, productId, { next_image_seq: image.seq + 1, updated_at: now });
          return image;
        });
        return { product_id: productId, ...imageView(row) };
      });
    } finally {
      await discardStaged(staged);
    }
  }

  /** Queues an `ean_fetch` job whose picture is attached to the product when it completes. */
  async addImageFromEan(principal: Principal, productId: string, rawEan: unknown) {
    const eanCode = parseEan(rawEan, 'body.ean_code');
    if (!(await repo.findProduct(this.ctx.db.kysely, productId))) throw productNotFound();
    const input: EanFetchInput = { ean_code: eanCode, description: null, product_id: productId };
    const job = await this.ctx.jobs.enqueue(EAN_FETCH, input, {
      userId: principal.userId,
      // Asking twice for one product and barcode while the first job runs gives that job back.
      dedupeKey: `${EAN_FETCH}:${principal.userId}:${eanCode}:${productId}`,
    });
    return { job_id: job.job_id, status: job.status as Extract<JobStatus, 'queued' | 'processing'>, ean_code: eanCode, product_id: productId };
  }

  /** One size of one picture of a product the caller may see. */
  async imageFile(principal: Principal | null, productId: string, imageId: string, size: SizeName): Promise<ProductImageFile> {
    await this.visible(principal, productId);
    const row = await repo.findProductImage(this.ctx.db.kysely, productId, imageId);
    if (!row) throw new NotFound('No such picture.', 'image_not_found');
    const variants = JSON.parse(row.variants) as Partial<Record<SizeName, StoredVariant>>;
    const variant = variants[size];
    if (!variant) throw new NotFound(`This picture has no ${size} size: it has ${sizesOf(row.source).join(', ')}.`, 'size_not_available');
    return { key: blobKeyOf(row, size), variant, createdAt: new Date(row.created_at) };
  }
}
