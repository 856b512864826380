import { describe, expect, it } from 'vitest';
import type { Context } from '../../../src/context.js';
import { assertDeletable, canMove, ORDER_STATUSES, type OrderStatus } from '../../../src/modules/custom-orders/lifecycle.js';
import { signedUrls, verifyLink } from '../../../src/modules/custom-orders/links.js';
import { displayName, storedFilename } from '../../../src/modules/custom-orders/photos.js';

describe('status lifecycle table', () => {
  const allowed = new Set([
    'pending>in_review',
    'in_review>modeling',
    'modeling>ready',
    'ready>shipped',
    'pending>cancelled',
    'in_review>cancelled',
    'modeling>cancelled',
    'ready>cancelled',
  ]);
  for (const from of ORDER_STATUSES) {
    for (const to of ORDER_STATUSES) {
      it(`${from} → ${to}: ${allowed.has(`${from}>${to}`) ? 'allowed' : '409'}`, () => {
        expect(canMove(from, to)).toBe(allowed.has(`${from}>${to}`));
      });
    }
  }

  it('deletable only while pending or cancelled', () => {
    const deletable = ORDER_STATUSES.filter((s: OrderStatus) => {
      try {
        assertDeletable(s);
        return true;
      } catch {
        return false;
      }
    });
    expect(deletable).toEqual(['pending', 'cancelled']);
  });
});

describe('signed links', () => {
  let now = new Date('2026-01-01T00:00:00Z');
  const ctx = {
    clock: { now: () => now },
    config: { signedUrlTtl: 3600 },
    secrets: { linkSecret: new Uint8Array(32).fill(7) },
  } as unknown as Context; // only the members links.ts reads

  function parts(url: string) {
    const q = new URL(url, 'http://x').searchParams;
    return { expires: Number(q.get('expires')), sig: q.get('sig') ?? '' };
  }

  it('verify until SIGNED_URL_TTL has passed, then fail with 403 link_expired', () => {
    const { expires, sig } = parts(signedUrls(ctx, 'o1', 'f1').thumb);
    expect(expires).toBe(now.getTime() / 1000 + 3600);
    expect(() => verifyLink(ctx, { orderId: 'o1', fileId: 'f1', size: 'thumb', expires }, sig)).not.toThrow();
    now = new Date(now.getTime() + 3601_000);
    expect(() => verifyLink(ctx, { orderId: 'o1', fileId: 'f1', size: 'thumb', expires }, sig)).toThrow(expect.objectContaining({ status: 403, code: 'link_expired' }));
    now = new Date('2026-01-01T00:00:00Z');
  });

  it('bind order, file, size and expiry', () => {
    const { expires, sig } = parts(signedUrls(ctx, 'o1', 'f1').thumb);
    const altered = [
      { orderId: 'o2', fileId: 'f1', size: 'thumb' as const, expires },
      { orderId: 'o1', fileId: 'f2', size: 'thumb' as const, expires },
      { orderId: 'o1', fileId: 'f1', size: 'original' as const, expires },
      { orderId: 'o1', fileId: 'f1', size: 'thumb' as const, expires: expires + 1 },
    ];
    for (const p of altered) expect(() => verifyLink(ctx, p, sig)).toThrow(expect.objectContaining({ status: 403, code: 'invalid_signature' }));
    expect(() => verifyLink(ctx, { orderId: 'o1', fileId: 'f1', size: 'thumb', expires }, 'zz')).toThrow(expect.objectContaining({ status: 403 }));
  });
});

describe('file names', () => {
  it('stored_filename follows YYYYMMDD_HHMMSS_<random>.jpg in UTC', () => {
    expect(storedFilename(new Date('2025-10-05T12:03:09.123Z'))).toMatch(/^20251005_120309_[0-9a-f]{12}\.jpg$/);
  });

  it('original_filename is the name as received, control characters removed, at most 255 characters', () => {
    expect(displayName('../../etc/passwd')).toBe('../../etc/passwd');
    expect(displayName('C:\\Users\\me\\Max.jpg')).toBe('C:\\Users\\me\\Max.jpg');
    expect(displayName(' Max .jpg ')).toBe(' Max .jpg ');
    expect(displayName('é'.repeat(300))).toBe('é'.repeat(255));
    expect(displayName('a\u0000b\nc.jpg')).toBe('abc.jpg');
    // A lone surrogate has no UTF-8 form: the answer shows the U+FFFD the database would keep. A pair stays.
    expect(displayName('a\ud800b.jpg')).toBe('a\ufffdb.jpg');
    expect(displayName('\ud83d\ude00.jpg')).toBe('\ud83d\ude00.jpg');
    expect(displayName('')).toBe('upload');
  });
});
