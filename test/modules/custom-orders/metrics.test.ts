import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startServer, type TestServer } from '../../helpers/server.js';
import { registerUser, type TestUser } from '../../helpers/users.js';
import { ADMIN, createOrder, filePart, loginAdmin, photo, upload } from './helpers.js';

let server: TestServer;
let user: TestUser;

beforeAll(async () => {
  server = await startServer({ ...ADMIN });
  user = await registerUser(server.url, 'counted');
});
afterAll(async () => server?.close());

async function metrics(): Promise<string> {
  const res = await fetch(`${server.url}/metrics`);
  expect(res.status).toBe(200);
  return res.text();
}

function value(text: string, series: string): number | undefined {
  const line = text.split('\n').find((l) => l.startsWith(`${series} `));
  return line === undefined ? undefined : Number(line.slice(series.length + 1));
}

describe('custom-order metrics on /metrics', () => {
  it('show every status at zero before anything happens', async () => {
    const text = await metrics();
    for (const status of ['pending', 'in_review', 'modeling', 'ready', 'shipped', 'cancelled']) {
      expect(value(text, `kiln_orders{status="${status}"}`)).toBe(0);
    }
    expect(value(text, 'kiln_order_files_accepted_total')).toBe(0);
  });

  it('count files and bytes accepted, rejections by reason, processing time and orders by status', async () => {
    const a = await photo(1000);
    const b = await photo(1100);
    const order = await createOrder(server.url, user.headers, [filePart(a), filePart(b)]);
    await createOrder(server.url, user.headers, [filePart(a)]);
    await upload(server.url, user.headers, [filePart(a), filePart(Buffer.from('plain text, not a photo'), 'x.jpg')]);
    await upload(server.url, user.headers, [{ field: 'pet_name', data: 'x'.repeat(101) }, filePart(a)]);
    const admin = await loginAdmin(server.url);
    await fetch(`${server.url}/api/images/orders/${order.order_id}/status`, {
      method: 'PUT',
      headers: { ...admin, 'content-type': 'application/json' },
      body: JSON.stringify({ status: 'cancelled' }),
    });

    const text = await metrics();
    expect(value(text, 'kiln_order_files_accepted_total')).toBe(3);
    expect(value(text, 'kiln_order_bytes_accepted_total')).toBe(2 * a.length + b.length);
    expect(value(text, 'kiln_order_uploads_rejected_total{reason="unsupported_image"}')).toBe(1);
    expect(value(text, 'kiln_order_uploads_rejected_total{reason="validation_error"}')).toBe(1);
    expect(value(text, 'kiln_order_image_processing_seconds_count')).toBeGreaterThanOrEqual(3);
    expect(value(text, 'kiln_orders{status="pending"}')).toBe(1);
    expect(value(text, 'kiln_orders{status="cancelled"}')).toBe(1);
  });

  it('count every refused upload by its reason, a body that is not multipart included', async () => {
    const reject = (reason: string, text: string) => value(text, `kiln_order_uploads_rejected_total{reason="${reason}"}`) ?? 0;
    const before = await metrics();
    const post = (contentType: string, body: string) =>
      fetch(`${server.url}/api/images/upload`, { method: 'POST', headers: { ...user.headers, 'content-type': contentType }, body });
    // A body the module reads and finds not multipart.
    const json = await post('application/json', JSON.stringify({ pet_name: 'Rex' }));
    expect(json.status).toBe(415);
    expect(((await json.json()) as { code: string }).code).toBe('not_multipart');
    // Bodies refused by content type before the handler reads them: still uploads refused.
    const form = await post('application/x-www-form-urlencoded', 'pet_name=Rex');
    expect(form.status).toBe(415);
    expect(((await form.json()) as { code: string }).code).toBe('unsupported_media_type');
    expect((await post('image/jpeg', 'not really a photo')).status).toBe(415);
    // Who may upload is the auth layer's refusal, counted in kiln_http_errors_total, not here.
    expect((await fetch(`${server.url}/api/images/upload`, { method: 'POST', body: new FormData() })).status).toBe(401);

    const after = await metrics();
    expect(reject('not_multipart', after)).toBe(reject('not_multipart', before) + 1);
    expect(reject('unsupported_media_type', after)).toBe(reject('unsupported_media_type', before) + 2);
    expect(reject('unauthorized', after)).toBe(0);
  });

  it('count an upload refused as too large (413) by its reason, accepting none of its files', async () => {
    const reject = (text: string) => value(text, 'kiln_order_uploads_rejected_total{reason="file_too_large"}') ?? 0;
    const accepted = (text: string) => value(text, 'kiln_order_files_accepted_total') ?? 0;
    const before = await metrics();
    const a = await photo(800);
    // One byte over the default MAX_UPLOAD_SIZE (10 MiB), beside a good photo.
    const big = Buffer.concat([a, Buffer.alloc(10 * 1024 * 1024 + 1 - a.length, 7)]);
    const res = await upload(server.url, user.headers, [filePart(a), filePart(big, 'huge.jpg')]);
    expect(res.status).toBe(413);
    expect(((await res.json()) as { code: string }).code).toBe('file_too_large');
    const after = await metrics();
    expect(reject(after)).toBe(reject(before) + 1);
    expect(accepted(after)).toBe(accepted(before));
  });

  it('count error answers by route pattern and code in kiln_http_errors_total, beside requests by status', async () => {
    const errors = (text: string, route: string, code: string) => value(text, `kiln_http_errors_total{route="${route}",code="${code}"}`) ?? 0;
    const requests = (text: string, route: string, status: number) =>
      value(text, `kiln_http_requests_total{method="GET",route="${route}",status="${status}"}`) ?? 0;
    const ORDER = '/api/images/orders/:order_id';
    const FILE = '/api/images/orders/:order_id/files/:file_id';
    const order = await createOrder(server.url, user.headers, [filePart(await photo(900))]);
    const link = new URL(order.files[0]?.urls.thumb ?? '', server.url);
    const before = await metrics();

    // An order nobody has, twice, and one without credentials.
    for (const id of ['no-such-order', 'another-missing-order']) {
      expect((await fetch(`${server.url}/api/images/orders/${id}`, { headers: user.headers })).status).toBe(404);
    }
    expect((await fetch(`${server.url}/api/images/orders/${order.order_id}`)).status).toBe(401);
    // A signed link altered, and the same link unaltered (a success, not an error).
    link.searchParams.set('sig', '0'.repeat(64));
    expect((await fetch(link)).status).toBe(403);
    expect((await fetch(new URL(order.files[0]?.urls.thumb ?? '', server.url))).status).toBe(200);

    const after = await metrics();
    // The pattern, never the path asked for: an id does not make a series of its own.
    expect(after).not.toContain('no-such-order');
    expect(errors(after, ORDER, 'order_not_found')).toBe(errors(before, ORDER, 'order_not_found') + 2);
    expect(errors(after, ORDER, 'unauthorized')).toBe(errors(before, ORDER, 'unauthorized') + 1);
    expect(errors(after, FILE, 'invalid_signature')).toBe(errors(before, FILE, 'invalid_signature') + 1);
    expect(requests(after, ORDER, 404)).toBe(requests(before, ORDER, 404) + 2);
    expect(requests(after, FILE, 403)).toBe(requests(before, FILE, 403) + 1);
    // The photo served is a request, not an error.
    expect(requests(after, FILE, 200)).toBe(requests(before, FILE, 200) + 1);
    const fileErrors = (text: string) =>
      text
        .split('\n')
        .filter((l) => l.startsWith(`kiln_http_errors_total{route="${FILE}"`))
        .reduce((sum, l) => sum + Number(l.slice(l.lastIndexOf(' ') + 1)), 0);
    expect(fileErrors(after)).toBe(fileErrors(before) + 1);
  });
});
