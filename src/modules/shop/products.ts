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
 *
 * What a client sees of them is shaped in product-views.ts; a request's
 * fields are read in product-fields.ts.
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
import { EAN_FETCH, parseEan, type EanFetchInput } from '../product-images/service.js';
import type { JobStatus } from '../../platform/jobs/index.js';
import { currencyOf, eanOf, nameOf, priceOf } from './product-fields.js';
import { blobKeyOf, imageView, productView, shopBlobKey, sizesOf, type ProductImageView, type ProductView } from './product-views.js';
import * as repo from './repo.js';
import type { ProductBody, ProductChanges, ProductListQuery } from './schemas.js';

export { productView, shopBlobKey, type ProductImageView, type ProductView } from './product-views.js';

/** The currency of a product created without one. */
export const DEFAULT_CURRENCY = 'EUR';

/** What the picture route needs to send one size. */
export interface ProductImageFile {
  key: string;
  variant: StoredVariant;
  createdAt: Date;
  /** The product is active: anyone may see the picture, so a shared cache may keep it. */
  public: boolean;
}

const productNotFound = (): NotFound => new NotFound('No such product.', 'product_not_found');

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
    const product = await this.visible(principal, productId);
    const row = await repo.findProductImage(this.ctx.db.kysely, productId, imageId);
    if (!row) throw new NotFound('No such picture.', 'image_not_found');
    const variants = JSON.parse(row.variants) as Partial<Record<SizeName, StoredVariant>>;
    const variant = variants[size];
    if (!variant) throw new NotFound(`This picture has no ${size} size: it has ${sizesOf(row.source).join(', ')}.`, 'size_not_available');
    return { key: blobKeyOf(row, size), variant, createdAt: new Date(row.created_at), public: product.is_active === 1 };
  }
}
