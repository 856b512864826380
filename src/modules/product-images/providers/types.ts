/**
 * The interface every external product database speaks to Kiln through.
 * A provider turns a normalised barcode into a product name and a picture
 * URL; it never downloads the picture (the job does, through the same
 * guarded fetch and image checks for every provider). A second provider is
 * one file implementing ProductProvider plus one line in index.ts.
 */

export interface ProductInfo {
  productName: string | null;
  /** Absolute http(s) URL of the product's main picture. */
  imageUrl: string;
}

/** A JSON answer from an outbound GET, whatever its status. */
export interface JsonAnswer {
  status: number;
  body: unknown;
  /** The wait an error answer asked for (its Retry-After), when it named one. */
  retryAfterMs?: number;
}

/** The one outbound call a provider may make; the job supplies it, SSRF-guarded and bounded. */
export type GetJson = (url: string, signal: AbortSignal) => Promise<JsonAnswer>;

export interface ProductProvider {
  /** Stored with each picture (`product_images.provider`). */
  readonly name: string;
  /**
   * Throws PermanentJobError `not_found` / `no_image` when the database has
   * no such product or no picture of it, TransientJobError
   * `source_unreachable` for answers worth retrying (5xx, 408, 429).
   */
  lookup(eanCode: string, signal: AbortSignal): Promise<ProductInfo>;
}
