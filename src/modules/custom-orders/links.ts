/**
 * Signed links to order photos. Order photos are private; a signed link lets
 * a page show one size of one photo without credentials until it expires.
 * The signature is HMAC-SHA256 (ctx.secrets.linkSecret) over order id, file
 * id, size and expiry, so changing any of them (or the expiry) breaks it.
 */
import { createHmac, timingSafeEqual } from 'node:crypto';
import type { Context } from '../../context.js';
import { Forbidden } from '../../errors.js';

export const ORDER_SIZES = ['original', 'medium', 'thumb'] as const;
export type OrderSize = (typeof ORDER_SIZES)[number];

export interface LinkParts {
  orderId: string;
  fileId: string;
  size: OrderSize;
  /** Unix seconds after which the link fails. */
  expires: number;
}

function signature(secret: Uint8Array, p: LinkParts): Buffer {
  // Newlines cannot occur in ids or sizes, so the joined message is unambiguous.
  return createHmac('sha256', secret).update(`${p.orderId}\n${p.fileId}\n${p.size}\n${p.expires}`).digest();
}

export function filePath(orderId: string, fileId: string): string {
  return `/api/images/orders/${encodeURIComponent(orderId)}/files/${encodeURIComponent(fileId)}`;
}

/** One signed link per size, valid for SIGNED_URL_TTL seconds from now. */
export function signedUrls(ctx: Context, orderId: string, fileId: string): Record<OrderSize, string> {
  const expires = Math.floor(ctx.clock.now().getTime() / 1000) + ctx.config.signedUrlTtl;
  const base = filePath(orderId, fileId);
  const entries = ORDER_SIZES.map((size) => {
    const sig = signature(ctx.secrets.linkSecret, { orderId, fileId, size, expires }).toString('hex');
    return [size, `${base}?size=${size}&expires=${expires}&sig=${sig}`];
  });
  return Object.fromEntries(entries) as Record<OrderSize, string>;
}

/**
 * Throws 403 unless `sig` is the signature of these parts and the link has not
 * expired. The comparison is constant-time so the signature cannot be guessed
 * byte by byte from response times.
 */
export function verifyLink(ctx: Context, p: LinkParts, sig: string): void {
  const expected = signature(ctx.secrets.linkSecret, p);
  const given = /^[0-9a-f]{64}$/.test(sig) ? Buffer.from(sig, 'hex') : Buffer.alloc(0);
  if (given.length !== expected.length || !timingSafeEqual(given, expected)) {
    throw new Forbidden('This link is not valid.', 'invalid_signature');
  }
  if (ctx.clock.now().getTime() / 1000 > p.expires) {
    throw new Forbidden('This link has expired; ask for the order again to get fresh links.', 'link_expired');
  }
}
