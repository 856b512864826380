/**
 * What a client sees of a product and its pictures, and where each size of
 * a picture is stored. A picture's sizes come from its source (an upload has
 * all four, a barcode's picture the product-images sizes), and its URLs and
 * blob keys follow from them.
 */
import { SIZE_NAMES, type SizeName } from '../../images/variants.js';
import { productBlobKey } from '../product-images/service.js';
import { PRODUCT_SIZES } from '../product-images/schemas.js';
import { formatMoney } from './money.js';
import type * as repo from './repo.js';

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

/** Blob key of an uploaded product picture's size. */
export function shopBlobKey(imageId: string, size: SizeName): string {
  return `shop/${imageId}/${size}.jpg`;
}

/** The sizes a picture has: all four for an upload; a barcode's picture is stored without `game`. */
export function sizesOf(source: repo.ProductImageRow['source']): readonly SizeName[] {
  return source === 'upload' ? SIZE_NAMES : PRODUCT_SIZES;
}

/** Blob key of a picture's size: an upload's own, or the barcode picture's shared one. */
export function blobKeyOf(row: Pick<repo.ProductImageRow, 'source' | 'blob_id'>, size: SizeName): string {
  return row.source === 'upload' ? shopBlobKey(row.blob_id, size) : productBlobKey(row.blob_id, size as (typeof PRODUCT_SIZES)[number]);
}

export function imageView(row: repo.ProductImageRow): ProductImageView {
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
