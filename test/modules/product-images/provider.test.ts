import { describe, expect, it } from 'vitest';
import { PermanentJobError, TransientJobError } from '../../../src/platform/jobs/index.js';
import { OpenFoodFactsProvider, PRODUCT_NAME_MAX } from '../../../src/modules/product-images/providers/openfoodfacts.js';
import type { JsonAnswer } from '../../../src/modules/product-images/providers/types.js';

const signal = new AbortController().signal;

function providerAnswering(answer: JsonAnswer, base = 'https://off.example') {
  const asked: string[] = [];
  const provider = new OpenFoodFactsProvider(base, async (url) => {
    asked.push(url);
    return answer;
  });
  return { provider, asked };
}

async function failure(p: Promise<unknown>): Promise<{ kind: string; code: string }> {
  const err = await p.then(
    () => {
      throw new Error('expected the lookup to fail');
    },
    (e: unknown) => e,
  );
  if (err instanceof TransientJobError) return { kind: 'transient', code: err.code };
  if (err instanceof PermanentJobError) return { kind: 'permanent', code: err.code };
  throw err;
}

describe('Open Food Facts provider', () => {
  it('asks {base}/api/v2/product/{code}.json, also under a base with a path', async () => {
    const ok = { status: 200, body: { status: 1, product: { product_name: 'Nutella', image_front_url: 'https://img.example/front.jpg' } } };
    const a = providerAnswering(ok);
    await a.provider.lookup('3017620422003', signal);
    expect(new URL(a.asked[0] as string).pathname).toBe('/api/v2/product/3017620422003.json');
    const b = providerAnswering(ok, 'http://127.0.0.1:9/mirror/');
    await b.provider.lookup('3017620422003', signal);
    expect(new URL(b.asked[0] as string).pathname).toBe('/mirror/api/v2/product/3017620422003.json');
    const c = providerAnswering(ok, 'http://127.0.0.1:9/mirror');
    await c.provider.lookup('3017620422003', signal);
    expect(new URL(c.asked[0] as string).pathname).toBe('/mirror/api/v2/product/3017620422003.json');
  });

  it('prefers image_front_url and falls back to image_url', async () => {
    const front = providerAnswering({ status: 200, body: { status: 1, product: { product_name: ' Nutella ', image_front_url: 'https://i/front.jpg', image_url: 'https://i/any.jpg' } } });
    expect(await front.provider.lookup('3017620422003', signal)).toEqual({ productName: 'Nutella', imageUrl: 'https://i/front.jpg' });
    const any = providerAnswering({ status: 200, body: { status: 1, product: { image_url: 'https://i/any.jpg' } } });
    expect(await any.provider.lookup('3017620422003', signal)).toEqual({ productName: null, imageUrl: 'https://i/any.jpg' });
  });

  it(`keeps a product name of at most ${PRODUCT_NAME_MAX} characters, without control characters`, async () => {
    const long = providerAnswering({ status: 200, body: { status: 1, product: { product_name: 'é'.repeat(1_500_000), image_url: 'https://i/any.jpg' } } });
    expect((await long.provider.lookup('3017620422003', signal)).productName).toBe('é'.repeat(PRODUCT_NAME_MAX));
    const odd = providerAnswering({ status: 200, body: { status: 1, product: { product_name: 'Nu\u0000tel\nla\u007f', image_url: 'https://i/any.jpg' } } });
    expect((await odd.provider.lookup('3017620422003', signal)).productName).toBe('Nu tel la');
  });

  it('reads 404 and status 0 as not_found, for good', async () => {
    expect(await failure(providerAnswering({ status: 404, body: { status: 0 } }).provider.lookup('1', signal))).toEqual({ kind: 'permanent', code: 'not_found' });
    expect(await failure(providerAnswering({ status: 200, body: { status: 0, status_verbose: 'product not found' } }).provider.lookup('1', signal))).toEqual({
      kind: 'permanent',
      code: 'not_found',
    });
    expect(await failure(providerAnswering({ status: 200, body: 'nonsense' }).provider.lookup('1', signal))).toEqual({ kind: 'permanent', code: 'not_found' });
  });

  it('reads a product without a usable picture URL as no_image', async () => {
    for (const product of [{ product_name: 'x' }, { image_front_url: '' }, { image_front_url: 'javascript:alert(1)' }, { image_url: 'file:///etc/passwd' }, { image_url: 'not a url' }]) {
      const { provider } = providerAnswering({ status: 200, body: { status: 1, product } });
      expect(await failure(provider.lookup('1', signal))).toEqual({ kind: 'permanent', code: 'no_image' });
    }
  });

  it('retries 5xx, 408 and 429, not other errors', async () => {
    for (const status of [500, 502, 503, 408, 429]) {
      expect(await failure(providerAnswering({ status, body: null }).provider.lookup('1', signal))).toEqual({ kind: 'transient', code: 'source_unreachable' });
    }
    expect(await failure(providerAnswering({ status: 403, body: null }).provider.lookup('1', signal))).toEqual({ kind: 'permanent', code: 'source_unreachable' });
  });
});
