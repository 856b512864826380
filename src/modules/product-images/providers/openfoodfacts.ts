/**
 * Open Food Facts' product API (and anything speaking it):
 * `GET {base}/api/v2/product/{code}.json` answers
 * `{status: 1, product: {product_name, image_front_url | image_url}}`, or
 * 404 / `status: 0` for a product it does not know.
 */
import { PermanentJobError, TransientJobError } from '../../../platform/jobs/index.js';
import { CONTROL_CHARACTERS, firstCharacters } from '../../../platform/text.js';
import type { GetJson, ProductInfo, ProductProvider } from './types.js';

interface OffAnswer {
  status?: unknown;
  product?: {
    product_name?: unknown;
    image_front_url?: unknown;
    image_url?: unknown;
  };
}

function text(v: unknown): string | null {
  return typeof v === 'string' && v.trim() !== '' ? v.trim() : null;
}

/** Product names are a few words; a database's longer one is cut here, so one answer cannot fill every read of the barcode. */
export const PRODUCT_NAME_MAX = 500;

/** The product's name as shown: control characters removed, at most PRODUCT_NAME_MAX characters, or null. */
function productName(v: unknown): string | null {
  const name = text(typeof v === 'string' ? v.replace(CONTROL_CHARACTERS, ' ') : v);
  return name === null ? null : firstCharacters(name, PRODUCT_NAME_MAX).trimEnd();
}

/** Only an absolute http(s) URL is a picture we may try to download. */
function pictureUrl(v: unknown): string | null {
  const s = text(v);
  if (s === null) return null;
  try {
    const u = new URL(s);
    return u.protocol === 'http:' || u.protocol === 'https:' ? u.toString() : null;
  } catch {
    return null; // not a URL at all: the same as no picture
  }
}

export class OpenFoodFactsProvider implements ProductProvider {
  readonly name = 'openfoodfacts';
  private readonly base: string;

  constructor(
    baseUrl: string,
    private readonly getJson: GetJson,
  ) {
    this.base = baseUrl.endsWith('/') ? baseUrl : `${baseUrl}/`;
  }

  productUrl(eanCode: string): string {
    const url = new URL(`api/v2/product/${encodeURIComponent(eanCode)}.json`, this.base);
    // Asking for three fields keeps OFF's answer to a few hundred bytes instead of tens of kilobytes.
    url.searchParams.set('fields', 'product_name,image_front_url,image_url');
    return url.toString();
  }

  async lookup(eanCode: string, signal: AbortSignal): Promise<ProductInfo> {
    const { status, body, retryAfterMs } = await this.getJson(this.productUrl(eanCode), signal);
    if (status === 404) throw new PermanentJobError('not_found', `The product database has no product with barcode ${eanCode}.`);
    if (status === 408 || status === 429 || status >= 500) {
      throw new TransientJobError('source_unreachable', `The product database answered ${status}.`, retryAfterMs);
    }
    if (status < 200 || status >= 300) throw new PermanentJobError('source_unreachable', `The product database answered ${status}.`);
    const answer = (typeof body === 'object' && body !== null ? body : {}) as OffAnswer;
    if (Number(answer.status) !== 1 || typeof answer.product !== 'object' || answer.product === null) {
      throw new PermanentJobError('not_found', `The product database has no product with barcode ${eanCode}.`);
    }
    const imageUrl = pictureUrl(answer.product.image_front_url) ?? pictureUrl(answer.product.image_url);
    if (imageUrl === null) throw new PermanentJobError('no_image', `The product database has no picture of product ${eanCode}.`);
    return { productName: productName(answer.product.product_name), imageUrl };
  }
}
