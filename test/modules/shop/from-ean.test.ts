import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { TestServer } from '../../helpers/server.js';
import { startFakeProvider, type FakeProvider } from '../product-images/fake-provider.js';
import { ADMIN, adminHeaders, ean13, startProductServer, waitForJob } from '../product-images/server.js';
import { call, makeProduct, type ProductJson } from './helpers.js';

let provider: FakeProvider;
let server: TestServer;
let admin: Record<string, string>;

beforeAll(async () => {
  provider = await startFakeProvider();
  server = await startProductServer(provider.url, { ADMIN_EMAIL: ADMIN.email, ADMIN_PASSWORD: ADMIN.password });
  admin = await adminHeaders(server.url);
});
afterAll(async () => {
  await server?.close();
  await provider?.close();
});

const fromEan = (productId: string, ean: unknown) => call<{ job_id: string; status: string; ean_code: string; product_id: string }>(server.url, 'POST', `/products/${productId}/images/from-ean`, admin, { ean_code: ean });
const product = async (id: string) => (await call<ProductJson>(server.url, 'GET', `/products/${id}`, admin)).body;

describe('a product picture fetched by barcode', () => {
  it('answers 202 with an ean_fetch job; when it completes the picture is the product\'s', async () => {
    const code = ean13(501);
    provider.products.set(code, { kind: 'ok', name: 'Tin of paint', image: '/img/rocket.jpg' });
    const p = await makeProduct(server.url, admin, { name: 'Paint' });
    const res = await fromEan(p.id, code);
    expect(res.status).toBe(202);
    expect(res.body).toEqual({ job_id: expect.any(String), status: 'queued', ean_code: code, product_id: p.id });

    const job = await waitForJob(server.url, admin, res.body.job_id);
    expect(job).toMatchObject({ type: 'ean_fetch', status: 'completed', input: { ean_code: code, product_id: p.id } });
    const after = await product(p.id);
    expect(after.images).toEqual([
      {
        image_id: expect.any(String),
        source: 'ean',
        ean_code: code,
        width: 640,
        height: 427,
        created_at: expect.stringMatching(/Z$/),
        urls: {
          original: `/products/${p.id}/images/${after.images[0]?.image_id}?size=original`,
          medium: `/products/${p.id}/images/${after.images[0]?.image_id}?size=medium`,
          thumb: `/products/${p.id}/images/${after.images[0]?.image_id}?size=thumb`,
        },
      },
    ]);
    expect(after.image_url).toBe(after.images[0]?.urls.medium);
    // Served from the barcode's own blobs: the same bytes as the barcode's picture route.
    const mine = await fetch(`${server.url}${after.images[0]?.urls.thumb}`);
    const shared = await fetch(`${server.url}/api/v1/images/${code}/file?size=thumb`, { headers: admin });
    expect(mine.status).toBe(200);
    expect(Buffer.from(await mine.arrayBuffer()).equals(Buffer.from(await shared.arrayBuffer()))).toBe(true);
    const game = await fetch(`${server.url}/products/${p.id}/images/${after.images[0]?.image_id}?size=game`);
    expect(game.status).toBe(404);
    expect(await game.json()).toMatchObject({ code: 'size_not_available' });
  });

  it('attaches a barcode\'s picture to a product once, however often it is asked for; other products get it too', async () => {
    const code = ean13(502);
    provider.products.set(code, { kind: 'ok', name: 'Brush', image: '/img/rocket.jpg' });
    const p = await makeProduct(server.url, admin, { name: 'Brush' });
    const q = await makeProduct(server.url, admin, { name: 'Brush set' });
    for (let i = 0; i < 2; i++) {
      const res = await fromEan(p.id, code);
      expect((await waitForJob(server.url, admin, res.body.job_id)).status).toBe('completed');
    }
    expect((await waitForJob(server.url, admin, (await fromEan(q.id, code)).body.job_id)).status).toBe('completed');
    expect((await product(p.id)).images.map((i) => i.ean_code)).toEqual([code]);
    expect((await product(q.id)).images.map((i) => i.ean_code)).toEqual([code]);
    expect(provider.productHits(code)).toBe(1);
  });

  it('keeps the barcode\'s blobs when a product with its picture is deleted: other products still show it', async () => {
    const code = ean13(503);
    provider.products.set(code, { kind: 'ok', name: 'Easel', image: '/img/rocket.jpg' });
    const p = await makeProduct(server.url, admin, { name: 'Easel' });
    const q = await makeProduct(server.url, admin, { name: 'Easel too' });
    for (const id of [p.id, q.id]) await waitForJob(server.url, admin, (await fromEan(id, code)).body.job_id);
    expect((await call(server.url, 'DELETE', `/products/${p.id}`, admin)).status).toBe(204);
    const kept = (await product(q.id)).images[0];
    expect((await fetch(`${server.url}${kept?.urls.original}`)).status).toBe(200);
  });

  it('refuses a bad barcode (422) or a missing product (404) without queueing a job', async () => {
    const p = await makeProduct(server.url, admin, { name: 'No picture' });
    const jobsBefore = (await call<{ jobs: unknown[] }>(server.url, 'GET', '/api/v1/jobs?limit=100', admin)).body.jobs.length;
    expect(await fromEan(p.id, '4006381333932')).toMatchObject({ status: 422, body: { code: 'invalid_ean' } });
    expect(await fromEan('nope', ean13(504))).toMatchObject({ status: 404, body: { code: 'product_not_found' } });
    expect((await call<{ jobs: unknown[] }>(server.url, 'GET', '/api/v1/jobs?limit=100', admin)).body.jobs.length).toBe(jobsBefore);
    expect((await product(p.id)).images).toEqual([]);
  });

  it('a job whose barcode has no picture fails, and the product is left as it was', async () => {
    const code = ean13(505);
    provider.products.set(code, { kind: 'missing' });
    const p = await makeProduct(server.url, admin, { name: 'Unknown' });
    const job = await waitForJob(server.url, admin, (await fromEan(p.id, code)).body.job_id);
    expect(job.status).toBe('failed');
    expect((await product(p.id)).images).toEqual([]);
  });
});
