import { readdir } from 'node:fs/promises';
import path from 'node:path';
import { sql } from 'kysely';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { registerUser, type TestUser } from '../../helpers/users.js';
import type { TestServer } from '../../helpers/server.js';
import { startFakeProvider, type FakeProvider, type Product } from './fake-provider.js';
import type { EanFetchOptions } from '../../../src/modules/product-images/fetch-job.js';
import { ean13, requestFetch, SHORT_TIMEOUT, startProductServer, waitForJob, type JobView } from './server.js';
import { until } from '../../helpers/until.js';

let provider: FakeProvider;
let server: TestServer;
let alice: TestUser;
let next = 100;

beforeAll(async () => {
  provider = await startFakeProvider();
  server = await startProductServer(provider.url);
  alice = await registerUser(server.url, 'alice');
});
afterAll(async () => {
  await server?.close();
  await provider?.close();
});

/** Files under DATA_DIR/<dir>, recursively (blobs, tmp). */
async function filesUnder(dir: string): Promise<string[]> {
  try {
    const entries = await readdir(path.join(server.dataDir, dir), { recursive: true, withFileTypes: true });
    return entries.filter((e) => e.isFile()).map((e) => path.join(e.parentPath, e.name));
  } catch {
    return []; // the directory does not exist yet: nothing was written
  }
}

/** Runs one job for a fresh barcode answered by `product`; returns the finished job. */
async function fetchProduct(product: Product): Promise<{ job: JobView; code: string }> {
  const code = ean13(next++);
  provider.products.set(code, product);
  const { status, body } = await requestFetch(server.url, alice.headers, { ean_code: code });
  expect(status).toBe(202);
  return { job: await waitForJob(server.url, alice.headers, body.job_id as string), code };
}

/** `code` asked for once on a Kiln of its own (`env`, `options`) pointing at `providerUrl`, closed after: the job once it ended. */
async function fetchOnOwnServer(providerUrl: string, code: string, env: Record<string, string> = {}, options?: EanFetchOptions): Promise<JobView> {
  const own = await startProductServer(providerUrl, env, options);
  try {
    const bob = await registerUser(own.url, 'bob');
    const { body } = await requestFetch(own.url, bob.headers, { ean_code: code });
    return await waitForJob(own.url, bob.headers, body.job_id as string);
  } finally {
    await own.close();
  }
}

async function expectNoPicture(code: string): Promise<void> {
  const res = await fetch(`${server.url}/api/v1/images/${code}`, { headers: alice.headers });
  expect(res.status).toBe(404);
}

describe('a product database answer that is not a product record', () => {
  it('a 200 that is not JSON (a maintenance page) is the source failing, retried, and not "no such product"', async () => {
    const { job, code } = await fetchProduct({ kind: 'raw', status: 200, type: 'text/html', body: '<html><body>Back soon</body></html>' });
    expect(job).toMatchObject({ status: 'failed', attempts: 3, error: { code: 'source_unreachable', detail: 'The product database answered 200 with something that is not JSON.' } });
    expect(provider.productHits(code)).toBe(3);
    await expectNoPicture(code);
  });

  it('an answer of megabytes is cut off and fails at once as the source, not as a picture too large', async () => {
    const { job, code } = await fetchProduct({ kind: 'raw', status: 200, type: 'application/json', body: JSON.stringify({ status: 1, padding: 'x'.repeat(3 * 1024 * 1024) }) });
    expect(job).toMatchObject({ status: 'failed', attempts: 1, error: { code: 'source_unreachable' } });
    expect(job.error?.detail).toMatch(/larger than 2097152 bytes/);
    await expectNoPicture(code);
  });

  it('a job that failed for good does not say it will try again', async () => {
    const { job } = await fetchProduct({ kind: 'status', status: 503 });
    expect(job).toMatchObject({ status: 'failed', attempts: 3, error: { code: 'source_unreachable', detail: 'The product database answered 503.' } });
  });
});

describe('permanent failures fail at once, after one attempt, storing nothing', () => {
  it('the provider has no such product (404): not_found', async () => {
    const { job, code } = await fetchProduct({ kind: 'missing' });
    expect(job).toMatchObject({ status: 'failed', attempts: 1, error: { code: 'not_found' } });
    expect(provider.productHits(code)).toBe(1);
    await expectNoPicture(code);
  });

  it('the product has no picture: no_image', async () => {
    const { job, code } = await fetchProduct({ kind: 'no_image', name: 'Plain' });
    expect(job).toMatchObject({ status: 'failed', attempts: 1, error: { code: 'no_image' } });
    await expectNoPicture(code);
  });

  it('the picture is an HTML page served as image/jpeg: not_an_image', async () => {
    const { job, code } = await fetchProduct({ kind: 'ok', name: 'Fake', image: '/img/page.html' });
    expect(job).toMatchObject({ status: 'failed', attempts: 1, error: { code: 'not_an_image' } });
    await expectNoPicture(code);
  });

  it('a 30 MB picture is cut off at MAX_UPLOAD_SIZE: image_too_large', async () => {
    const { job, code } = await fetchProduct({ kind: 'ok', name: 'Huge', image: '/img/huge.jpg' });
    expect(job).toMatchObject({ status: 'failed', attempts: 1, error: { code: 'image_too_large' } });
    await expectNoPicture(code);
  });

  it('a picture URL redirecting to 169.254.169.254 is refused: source_blocked', async () => {
    const { job, code } = await fetchProduct({ kind: 'ok', name: 'Sneaky', image: '/img/to-metadata.jpg' });
    expect(job).toMatchObject({ status: 'failed', attempts: 1, error: { code: 'source_blocked' } });
    await expectNoPicture(code);
  });

  it('a picture URL on a host outside FETCH_ALLOWED_HOSTS is refused: source_blocked', async () => {
    const { job } = await fetchProduct({ kind: 'ok', name: 'Local', image: 'http://localhost:1/x.jpg' });
    expect(job).toMatchObject({ status: 'failed', attempts: 1, error: { code: 'source_blocked' } });
  });

  it('a redirect loop stops after 3 redirects: source_unreachable', async () => {
    const before = provider.hits.get('/img/loop.jpg') ?? 0;
    const { job } = await fetchProduct({ kind: 'ok', name: 'Loop', image: '/img/loop.jpg' });
    expect(job).toMatchObject({ status: 'failed', attempts: 1, error: { code: 'source_unreachable' } });
    expect((provider.hits.get('/img/loop.jpg') ?? 0) - before).toBe(4);
  });

  it('a picture URL that answers 404: source_unreachable, not retried', async () => {
    const { job } = await fetchProduct({ kind: 'ok', name: 'Gone', image: '/img/gone.jpg' });
    expect(job).toMatchObject({ status: 'failed', attempts: 1, error: { code: 'source_unreachable' } });
  });

  it('leaves no blob and no temp file behind', async () => {
    expect(await filesUnder('blobs/product')).toEqual([]);
    expect(await filesUnder('tmp')).toEqual([]);
  });
});

describe('transient failures are retried with backoff', () => {
  it('503 twice, then the product: completed on attempt 3', async () => {
    const { job, code } = await fetchProduct({ kind: 'flaky', failures: 2, name: 'Persistent', image: '/img/rocket.jpg' });
    expect(job).toMatchObject({ status: 'completed', attempts: 3, max_attempts: 3, error: null });
    expect(provider.productHits(code)).toBe(3);
  });

  it('503 every time: failed after max_attempts with source_unreachable', async () => {
    const { job, code } = await fetchProduct({ kind: 'status', status: 503 });
    expect(job).toMatchObject({ status: 'failed', attempts: 3, error: { code: 'source_unreachable' } });
    expect(provider.productHits(code)).toBe(3);
  });

  it('a picture download answering 503 is retried, and completes once the host recovers', async () => {
    const image = '/img/flaky/1/recovering.jpg';
    const { job, code } = await fetchProduct({ kind: 'ok', name: 'Busy CDN', image });
    expect(job).toMatchObject({ status: 'completed', attempts: 2, error: null });
    expect(provider.hits.get(image)).toBe(2);
    const res = await fetch(`${server.url}/api/v1/images/${code}`, { headers: alice.headers });
    expect(res.status).toBe(200);
  });

  it('a picture download answering 503 every time: failed after max_attempts with source_unreachable', async () => {
    const image = '/img/flaky/99/down.jpg';
    const { job, code } = await fetchProduct({ kind: 'ok', name: 'Down CDN', image });
    expect(job).toMatchObject({ status: 'failed', attempts: 3, error: { code: 'source_unreachable' } });
    expect(provider.hits.get(image)).toBe(3);
    await expectNoPicture(code);
  });

  it('429 is retried too', async () => {
    const { job, code } = await fetchProduct({ kind: 'status', status: 429 });
    expect(job).toMatchObject({ status: 'failed', attempts: 3 });
    expect(provider.productHits(code)).toBe(3);
  });

  it('a 429 naming a Retry-After is asked again no sooner than that, not after the backoff', async () => {
    const code = ean13(next++);
    provider.products.set(code, { kind: 'status', status: 429, retryAfter: '60' });
    const asked = Date.now();
    const { status, body } = await requestFetch(server.url, alice.headers, { ean_code: code });
    expect(status).toBe(202);
    const jobId = body.job_id as string;
    const row = async () => server.ctx.db.kysely.selectFrom('jobs').select(['status', 'attempts', 'run_after']).where('job_id', '=', jobId).executeTakeFirstOrThrow();
    const waiting = await until(async () => {
      const now = await row();
      return now.status === 'queued' && now.attempts === 1 && now;
    });
    // Queued for its second attempt a minute on (the backoff alone says 2 s), its error saying why.
    expect(Date.parse(waiting.run_after) - asked).toBeGreaterThanOrEqual(59_000);
    const job = (await (await fetch(`${server.url}/api/v1/jobs/${jobId}`, { headers: alice.headers })).json()) as { status: string; error: { code: string } };
    expect(job).toMatchObject({ status: 'queued', error: { code: 'source_unreachable' } });
    expect(provider.productHits(code)).toBe(1);
    // Out of the way of the tests after this one: the job would wait its minute in the queue.
    await server.ctx.db.kysely.updateTable('jobs').set({ status: 'cancelled', finished_at: new Date().toISOString() }).where('job_id', '=', jobId).execute();
  });

  it('an answer slower than the total timeout is given up on and retried', async () => {
    // The answer would come at twice SHORT_TIMEOUT's 1.5 s total timeout, whose clock starts before the request is
    // sent: the timeout always fires first, and an attempt that waited longer would complete the job.
    const code = ean13(next++);
    provider.products.set(code, { kind: 'slow', delayMs: 3_000, name: 'Slow', image: '/img/rocket.jpg' });
    const job = await fetchOnOwnServer(provider.url, code, {}, SHORT_TIMEOUT);
    expect(job).toMatchObject({ status: 'failed', attempts: 3, error: { code: 'source_unreachable' } });
    expect(provider.productHits(code)).toBe(3);
  });

  it('a provider that is not listening at all is unreachable, retried', async () => {
    const job = await fetchOnOwnServer('http://127.0.0.1:9', ean13(next++));
    expect(job).toMatchObject({ status: 'failed', attempts: 3, error: { code: 'source_unreachable' } });
  });
});

describe('a picture stored whole or not at all', () => {
  it('a picture whose record cannot be written leaves none of its files behind, and no record', async () => {
    const code = ean13(next++);
    provider.products.set(code, { kind: 'ok', name: 'Unrecorded', image: '/img/rocket.jpg' });
    const blobsBefore = await filesUnder('blobs/product');
    // The database refuses this barcode's row only: everything before it (download, variants, blob writes) succeeds.
    await sql
      .raw(`CREATE TRIGGER refuse_unrecorded BEFORE INSERT ON product_images WHEN NEW.ean_code = '${code}' BEGIN SELECT RAISE(ABORT, 'refused by the test'); END`)
      .execute(server.ctx.db.kysely);
    try {
      const { status, body } = await requestFetch(server.url, alice.headers, { ean_code: code });
      expect(status).toBe(202);
      const job = await waitForJob(server.url, alice.headers, body.job_id as string);
      expect(job).toMatchObject({ status: 'failed', error: { code: expect.any(String) } });
      expect(provider.hits.get('/img/rocket.jpg')).toBeGreaterThan(0);
    } finally {
      await sql.raw('DROP TRIGGER refuse_unrecorded').execute(server.ctx.db.kysely);
    }
    await expectNoPicture(code);
    expect(await server.ctx.db.kysely.selectFrom('product_images').select('ean_code').where('ean_code', '=', code).execute()).toEqual([]);
    expect(await filesUnder('blobs/product')).toEqual(blobsBefore);
    expect(await filesUnder('tmp')).toEqual([]);
  });
});

describe('the guard also covers the provider API itself', () => {
  it('a provider on 127.0.0.1 without FETCH_ALLOWED_HOSTS is refused', async () => {
    const code = ean13(next++);
    provider.products.set(code, { kind: 'ok', name: 'x', image: '/img/rocket.jpg' });
    const job = await fetchOnOwnServer(provider.url, code, { FETCH_ALLOWED_HOSTS: '' });
    expect(job).toMatchObject({ status: 'failed', attempts: 1, error: { code: 'source_blocked' } });
    expect(provider.productHits(code)).toBe(0);
  });
});
