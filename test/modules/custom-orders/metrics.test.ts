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
});
